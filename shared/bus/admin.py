"""Topic bootstrap: create topics with the configured partitions, idempotently."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from shared.config import KafkaSettings
from shared.events.topics import Topics
from shared.logging import get_logger

if TYPE_CHECKING:
    from shared.bus.producer import EventProducer

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


class TopicsLost(RuntimeError):
    """The broker is another cluster or no longer has our topics: a new, empty broker took the old
    one's place."""


class TopicGuard:
    """Notices a broker that is not the one the process started on: another cluster id (a broker
    restarted empty, as the embedded one is, is a new cluster) or without Cadencia's topics. Not
    ready meanwhile, and ``on_lost`` is called once, e.g. ``abandon_hook``, so the supervisor
    restarts the process. A fresh start re-creates the topics (``ensure_topics``) and joins the
    groups from the start of the new, empty topics; in-process positions and members from the old
    broker would otherwise skip records or commit to partitions that no longer exist. This holds
    also when another service re-created the topics first. Nothing is lost: what was committed to
    the database but not yet published is still in the outbox (the relay confirms the broker
    before it deletes a row, ``EventProducer.confirm``).
    """

    def __init__(
        self, producer: EventProducer, settings: KafkaSettings, on_lost: Callable[[BaseException], None] | None,
        interval: float = 5.0,
    ) -> None:
        self.producer, self.on_lost, self.interval = producer, on_lost, interval
        self.topics = set(Topics(settings.topic_prefix).all())
        self.missing: list[str] = []
        self.lost: TopicsLost | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="topic-guard")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def ping(self) -> None:
        if self.lost is not None:
            raise self.lost

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                cluster_id, present = await asyncio.wait_for(self.producer.cluster(self.topics), timeout=5)
            except (KafkaError, TimeoutError, OSError):
                continue  # the broker is away: the producer's own ready check says so
            missing = sorted(self.topics - present)
            if self.producer.changed(cluster_id):
                error = TopicsLost(f"the broker is another cluster ({cluster_id!r}; started on "
                                   f"{self.producer.cluster_id!r})")
            elif missing:
                error = TopicsLost(f"the broker lost {len(missing)} of our topics (a new, empty broker?), "
                                   f"e.g. {missing[0]}")
            else:
                continue
            log.error("the broker changed; restarting to re-create the topics and join afresh",
                      cluster_id=cluster_id, missing=len(missing), example=missing[0] if missing else None)
            self.missing, self.lost = missing, error
            if self.on_lost is not None:
                self.on_lost(error)
            return
