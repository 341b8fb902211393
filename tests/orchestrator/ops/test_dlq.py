"""Dead letters from any service are listed over HTTP and replayed to their source topic."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import httpx

from services.orchestrator.app import create_app
from services.orchestrator.settings import Settings
from shared.bus import EventProducer
from shared.config import DatabaseSettings, KafkaSettings
from shared.events import Topics
from shared.events.contracts import DeadLettered, DeadLetteredEvent
from tests.helpers import TopicReader, wait_for

ADMIN = {"Authorization": "Bearer dev-admin-key"}


async def test_dead_letters_are_listed_and_replayed(kafka_settings: KafkaSettings, database_url: str) -> None:
    settings = Settings(kafka=kafka_settings, database=DatabaseSettings(url=database_url), seed_templates=False,
                        api_keys="admin:dev-admin-key,viewer:view-key")
    topics = Topics(kafka_settings.topic_prefix)
    app = create_app(settings)
    original = b'{"specversion":"1.0","type":"cadencia.sms.bogus"}'
    letter = DeadLetteredEvent(subject="deb-9", source="cadencia/sms", data=DeadLettered(
        source_topic=topics.dispatch("sms"), partition=1, offset=41, key="deb-9",
        value_b64=base64.b64encode(original).decode(), error="invalid event: unknown type", service="sms",
        failed_at=datetime(2026, 5, 4, 12, tzinfo=UTC),
    ))
    async with app.router.lifespan_context(app):
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://orchestrator")
        producer = EventProducer(kafka_settings)
        await producer.start()
        try:
            await producer.publish(topics.dlq, letter)
            await producer.publish(topics.dlq, letter)  # a duplicate delivery is stored once

            async def listed() -> list:
                r = await client.get("/v1/dlq", headers={"Authorization": "Bearer view-key"})
                return r.json()["items"]

            items = await wait_for(listed, what="dead letter listed")
            assert len(items) == 1
            item = items[0]
            assert item["service"] == "sms" and item["offset"] == 41 and "unknown type" in item["error"]
            assert "value_b64" not in item  # viewers see metadata, not personal data
            r = await client.get(f"/v1/dlq/{item['id']}", headers={"Authorization": "Bearer view-key"})
            assert r.status_code == 403
            r = await client.get(f"/v1/dlq/{item['id']}", headers=ADMIN)
            assert base64.b64decode(r.json()["value_b64"]) == original

            async with TopicReader(kafka_settings, topics.dispatch("sms")) as reader:
                r = await client.post(f"/v1/dlq/{item['id']}/replay", headers=ADMIN)
                assert r.status_code == 202 and r.json()["replay_count"] == 1
                await wait_for(lambda: [x for x in reader.raw if x.value == original], what="replayed bytes")
                replayed = [x for x in reader.raw if x.value == original]
                assert len(replayed) == 1 and replayed[0].key == b"deb-9"
            assert (await client.post("/v1/dlq/999999/replay", headers=ADMIN)).status_code == 404
        finally:
            await producer.stop()
            await client.aclose()
