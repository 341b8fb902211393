"""The dashboard's JSON, page and Prometheus gauges reflect the orchestrator's tables."""

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
from tests.helpers import wait_for

VIEW = {"Authorization": "Bearer view-key"}


async def test_stats_page_and_metrics(kafka_settings: KafkaSettings, tmp_path) -> None:
    settings = Settings(kafka=kafka_settings, database=DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path}/o.db"),
                        seed_templates=False, api_keys="admin:dev-admin-key,viewer:view-key")
    topics = Topics(kafka_settings.topic_prefix)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://orchestrator")
        try:
            assert (await client.get("/v1/stats")).status_code == 401
            empty = (await client.get("/v1/stats?fresh=true", headers=VIEW)).json()
            assert empty["dead_letters"] == 0 and empty["deferred_pending"] == 0 and empty["requests"] == {}

            page = await client.get("/dashboard")
            assert page.status_code == 200 and "text/html" in page.headers["content-type"]
            assert '<script src="/ui/dashboard.js">' in page.text and "<html lang=" in page.text
            script = await client.get("/ui/dashboard.js")
            assert script.status_code == 200 and 'fetch("/v1/stats"' in script.text
            assert (await client.get("/ui/..%2Fcomponent.py")).status_code == 404

            producer = EventProducer(kafka_settings)
            await producer.start()
            try:
                await producer.publish(topics.dlq, DeadLetteredEvent(subject="d", data=DeadLettered(
                    source_topic=topics.contact_requests, partition=0, offset=3, key="d",
                    value_b64=base64.b64encode(b"{").decode(), error="invalid", service="orchestrator",
                    failed_at=datetime(2026, 1, 1, tzinfo=UTC))))
            finally:
                await producer.stop()

            async def counted() -> bool:
                r = await client.get("/v1/stats?fresh=true", headers=VIEW)
                return r.json()["dead_letters"] == 1

            await wait_for(counted, what="dead letter counted")
            metrics = (await client.get("/metrics")).text
            assert "cadencia_dead_letters 1.0" in metrics
            assert "cadencia_outbox_backlog" in metrics
        finally:
            await client.aclose()
