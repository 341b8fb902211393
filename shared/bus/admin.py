"""Topic bootstrap: create topics with the configured partitions, idempotently."""

from __future__ import annotations

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from shared.config import KafkaSettings
from shared.events.topics import Topics
from shared.logging import get_logger

log = get_logger(__name__)


async def ensure_topics(settings: KafkaSettings, topics: list[str] | None = None) -> list[str]:
    """Create missing topics (all of Cadencia's by default); returns the ones created."""
    names = Topics(settings.topic_prefix)
    wanted = topics if topics is not None else names.all()
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers, request_timeout_ms=settings.request_timeout_ms
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in wanted if t not in existing]
        created: list[str] = []
        for topic in missing:
            configs = {"cleanup.policy": "compact"} if names.is_compacted(topic) else {}
            try:
                partitions = settings.partitions_for(topic)
                await admin.create_topics(
                    [NewTopic(topic, partitions, settings.replication_factor, topic_configs=configs)]
                )
                created.append(topic)
            except TopicAlreadyExistsError:
                pass  # another instance won the race
        if created:
            log.info("topics created", topics=created)
        return created
    finally:
        await admin.close()
