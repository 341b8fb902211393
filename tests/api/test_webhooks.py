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


async def test_each_event_is_one_delivery_per_subscriber_and_an_event_nobody_wants_is_passed_over_unread(
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

        async def handled(n: int, passed_over: int) -> bool:
            return bool(consumer.handled >= n and consumer.passed_over >= passed_over)

        async def count(model: Any, *where: Any) -> int:
            async with db.sessions() as session:
                return int(await session.scalar(select(func.count()).select_from(model).where(*where)) or 0)

        def status(request_id: str) -> StatusChangedEvent:
            return StatusChangedEvent(source="tests", subject="deb-w", data=StatusChanged(
                request_id=request_id, debtor_id="deb-w", status="dispatched"))

        # No endpoint: the event is passed over unread (its header names its type), and nothing is
        # written (no delivery, no inbox mark).
        await o.publish(o.topics.contact_status, status("req-before"))
        await wait_for(lambda: handled(0, 1), what="the first event passed over")
        assert consumer.handled == 0
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
        await wait_for(lambda: handled(2, 2), what="the other events handled or passed over")
        assert (consumer.handled, consumer.passed_over) == (2, 2)
        async with db.sessions() as session:
            rows = (await session.execute(select(WebhookDelivery.event_id))).scalars().all()
        assert rows == [wanted.id]


async def test_only_a_header_naming_a_known_unwanted_type_lets_a_record_pass_unread(
    kafka_settings: KafkaSettings, database_url: str, receiver: Receiver
) -> None:
    """The webhooks consumer passes over a record unread only when its ``ce_type`` header names a known
    event type no active endpoint wants. Without that header, or with a header naming no known type,
    the record is read as always: poison in it is dead-lettered, a valid event is handled."""
    import base64

    from sqlalchemy import func, select

    from services.orchestrator.webhooks.models import WebhookDelivery
    from shared.events import Topics, encode_event
    from shared.events.contracts import StatusChanged, StatusChangedEvent
    from tests.helpers import TopicReader

    settings = make_settings(kafka_settings, database_url, webhooks=WebhookSettings(interval=0.05))
    dlq = Topics(kafka_settings.topic_prefix).dlq
    async with running(settings, FakeClock()) as o, TopicReader(kafka_settings, dlq) as letters:
        consumer, producer = o.app.state.webhooks_consumer, o.app.state.ctx.producer

        async def send(value: bytes, headers: list[tuple[str, bytes]] | None) -> None:
            await (await producer.send_raw(o.topics.contact_status, value, b"deb-h", headers=headers))

        def status(request_id: str) -> StatusChangedEvent:
            return StatusChangedEvent(source="tests", subject="deb-h", data=StatusChanged(
                request_id=request_id, debtor_id="deb-h", status="dispatched"))

        def webhook_letters() -> list[Any]:
            return [e for e in letters.of_type("cadencia.dlq.dead_lettered.v1")
                    if e.data.source_topic == o.topics.contact_status and e.data.service == "orchestrator"]

        poison = b'{"not": "an event"'
        await send(poison + b" no header", None)
        await send(poison + b" unknown type", [("ce_type", b"cadencia.nope.v1")])
        await send(poison + b" bad header", [("ce_type", b"\xff\xfe")])
        await send(encode_event(status("req-no-header")), None)
        await send(poison + b" known type", [("ce_type", STATUS.encode())])
        await send(encode_event(status("req-header")), [("ce_type", STATUS.encode())])

        await wait_for(lambda: len(webhook_letters()) >= 3 and consumer.handled >= 1
                       and consumer.passed_over >= 2, timeout=30, what="the six records handled")
        read = sorted(base64.b64decode(e.data.value_b64).removeprefix(poison) for e in webhook_letters())
        assert read == [b" bad header", b" no header", b" unknown type"]
        assert all(e.data.error.startswith("invalid event") for e in webhook_letters())
        assert (consumer.handled, consumer.passed_over) == (1, 2)

        # An endpoint subscribed to every type: nothing passes by, the event gets its delivery.
        answer = await o.http.post("/v1/webhooks", headers=ADMIN, json={
            "url": f"{receiver.url}/all", "event_types": ["*"]})
        assert answer.status_code == 201, answer.text
        wanted = status("req-wanted")
        await send(encode_event(wanted), [("ce_type", STATUS.encode())])
        await wait_for(lambda: consumer.handled >= 2, timeout=30, what="the event handled")
        assert consumer.passed_over == 2
        async with o.app.state.ctx.db.sessions() as session:
            rows = (await session.execute(select(WebhookDelivery.event_id))).scalars().all()
            assert rows == [wanted.id]
            assert await session.scalar(select(func.count()).select_from(WebhookDelivery)) == 1
