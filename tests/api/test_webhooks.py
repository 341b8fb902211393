"""Outgoing webhooks against a local receiver: Standard Webhooks signature, retries with backoff, attempts visible."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from services.orchestrator.webhooks.settings import WebhookSettings
from shared.config import KafkaSettings
from tests.helpers import wait_for
from tests.orchestrator.conftest import T0, FakeClock, make_settings, request_event, running

ADMIN = {"Authorization": "Bearer admin-key"}
EDITOR = {"Authorization": "Bearer editor-key"}
STATUS = "cadencia.contact.status_changed.v1"


@dataclass
class Receiver:
    """Answers ``fail_first`` requests per path with 503, then 200; records every request."""

    fail_first: dict[str, int]
    url: str = ""
    received: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.received.append((request.path, dict(request.headers), body))
        seen = sum(1 for path, _, _ in self.received if path == request.path)
        if seen <= self.fail_first.get(request.path, 0):
            return web.Response(status=503, text="busy")
        return web.Response(status=200)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver(fail_first={"/flaky": 2, "/down": 10**6})
    app = web.Application()
    app.router.add_post("/{name}", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    rec.url = f"http://127.0.0.1:{port}"
    try:
        yield rec
    finally:
        await runner.cleanup()


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """Standard Webhooks verification, written from the spec (not with the sender's code)."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(f"v1,{expected}", sig) for sig in headers["webhook-signature"].split(" "))


async def test_webhooks_are_signed_retried_with_backoff_and_their_attempts_visible(
    kafka_settings: KafkaSettings, database_url: str, receiver: Receiver
) -> None:
    clock = FakeClock()
    settings = make_settings(kafka_settings, database_url,
                             webhooks=WebhookSettings(interval=0.05, backoff_base=60, retry_window=86_400))
    async with running(settings, clock) as o:
        async def register(path: str) -> dict[str, Any]:
            answer = await o.http.post("/v1/webhooks", headers=ADMIN, json={
                "url": f"{receiver.url}{path}", "event_types": [STATUS], "description": path})
            assert answer.status_code == 201, answer.text
            return dict(answer.json())

        flaky, down = await register("/flaky"), await register("/down")
        assert flaky["secret"].startswith("whsec_") and flaky["created_by"] == "admin"
        # Only admins manage endpoints; a bad URL is a typed 422.
        assert (await o.http.post("/v1/webhooks", headers=EDITOR, json={
            "url": f"{receiver.url}/x", "event_types": [STATUS]})).status_code == 403
        bad = await o.http.post("/v1/webhooks", headers=ADMIN, json={"url": "ftp://x", "event_types": [STATUS]})
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "url"

        event = request_event("deb-hook", channel="sms")
        assert (await o.submit(event)).json()["results"][0]["status"] == "dispatched"

        async def deliveries(endpoint: dict[str, Any]) -> list[dict[str, Any]]:
            page = (await o.http.get(f"/v1/webhooks/{endpoint['id']}/deliveries", headers=ADMIN)).json()
            return list(page["items"])

        async def attempted(endpoint: dict[str, Any], n: int) -> dict[str, Any] | None:
            items = await deliveries(endpoint)
            return items[0] if items and items[0]["attempts"] >= n else None

        first = await wait_for(lambda: attempted(flaky, 1), what="first attempt")
        assert first["state"] == "pending" and first["attempt_log"][0]["status_code"] == 503
        # Backoff: nothing more until the clock passes the next attempt (60 s, then 120 s).
        assert first["next_attempt_at"].startswith("2025-03-12T15:01:00")
        clock.advance(seconds=61)
        second = await wait_for(lambda: attempted(flaky, 2), what="second attempt")
        assert second["state"] == "pending" and second["next_attempt_at"].startswith("2025-03-12T15:03:01")
        clock.advance(seconds=121)
        third = await wait_for(lambda: attempted(flaky, 3), what="third attempt")
        assert third["state"] == "delivered"
        assert [a["status_code"] for a in third["attempt_log"]] == [503, 503, 200]

        # Every attempt carried the same webhook-id and a valid signature over the exact body.
        posted = [(h, b) for path, h, b in receiver.received if path == "/flaky"]
        assert len(posted) == 3 and {h["webhook-id"] for h, _ in posted} == {third["id"]}
        assert all(verify(flaky["secret"], h, b) for h, b in posted)
        assert not verify(down["secret"], *posted[0])
        payload = json.loads(posted[0][1])
        assert payload["type"] == STATUS and payload["data"]["request_id"] == event.id
        assert payload["data"]["status"] == "dispatched"

        # The endpoint that never answers 2xx is given up after the 24-hour window.
        clock.advance(hours=25)
        given_up = await wait_for(
            lambda: _state(deliveries(down), "failed"), what="delivery to /down given up")
        assert given_up["attempts"] >= 3 and all(a["status_code"] == 503 for a in given_up["attempt_log"])
        one = await o.http.get(f"/v1/webhooks/{down['id']}/deliveries/{given_up['id']}", headers=ADMIN)
        assert one.json()["attempt_log"] == given_up["attempt_log"]


async def _state(items_awaitable: Any, state: str) -> dict[str, Any] | None:
    items = await items_awaitable
    return items[0] if items and items[0]["state"] == state else None


async def test_each_event_is_one_delivery_per_subscriber_and_an_event_nobody_wants_writes_nothing(
    kafka_settings: KafkaSettings, database_url: str, receiver: Receiver
) -> None:
    from sqlalchemy import func, select

    from services.orchestrator.webhooks.models import WebhookDelivery
    from shared.db import InboxRecord
    from shared.events.contracts import (
        DeliveryUpdated,
        DeliveryUpdatedEvent,
        StatusChanged,
        StatusChangedEvent,
    )

    settings = make_settings(kafka_settings, database_url, webhooks=WebhookSettings(interval=0.05))
    async with running(settings, FakeClock()) as o:
        consumer, db = o.app.state.webhooks_consumer, o.app.state.ctx.db
        mark = f"{settings.consumer_group}-webhooks"

        async def handled(n: int) -> bool:
            return bool(consumer.handled >= n)

        async def count(model: Any, *where: Any) -> int:
            async with db.sessions() as session:
                return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)

        def status(request_id: str) -> StatusChangedEvent:
            return StatusChangedEvent(source="tests", subject="deb-w", data=StatusChanged(
                request_id=request_id, debtor_id="deb-w", status="dispatched"))

        # No endpoint: the event is read, and nothing is written (no delivery, no inbox mark).
        await o.publish(o.topics.contact_status, status("req-before"))
        await wait_for(lambda: handled(1), what="the first event handled")
        assert await count(InboxRecord, InboxRecord.consumer == mark) == 0
        assert await count(WebhookDelivery) == 0

        answer = await o.http.post("/v1/webhooks", headers=ADMIN, json={
            "url": f"{receiver.url}/ok", "event_types": [STATUS]})
        assert answer.status_code == 201, answer.text
        wanted = status("req-after")
        unwanted = DeliveryUpdatedEvent(subject="deb-w", data=DeliveryUpdated(
            dispatch_id="d-1", request_id="req-after", debtor_id="deb-w", channel="sms", status="delivered",
            provider="twilio", occurred_at=T0))
        for event in (wanted, unwanted, wanted):  # the same event twice: one delivery
            await o.publish(o.topics.contact_status if event is wanted else o.topics.contact_outcomes, event)
        await wait_for(lambda: handled(4), what="the other events handled")
        async with db.sessions() as session:
            rows = (await session.execute(select(WebhookDelivery.event_id))).scalars().all()
        assert rows == [wanted.id]
