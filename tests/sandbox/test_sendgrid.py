"""SendGrid v3 mail send through the official client, its errors, and the signed event webhook."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import orjson
import pytest
from python_http_client.exceptions import BadRequestsError, TooManyRequestsError, UnauthorizedError
from sendgrid import SendGridAPIClient
from sendgrid.helpers.eventwebhook import EventWebhook, EventWebhookHeader

from services.sandbox.testing import SandboxHandle
from tests.helpers import wait_for
from tests.sandbox.conftest import Receiver


def mail(*recipients: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "personalizations": [
            {"to": [{"email": r}], "custom_args": {"dispatch_id": f"d-{i}"}} for i, r in enumerate(recipients)
        ],
        "from": {"email": "cobranza@cadencia.example", "name": "Cadencia"},
        "subject": "Recordatorio de pago",
        "content": [{"type": "text/plain", "value": "Hola"}, {"type": "text/html", "value": "<p>Hola</p>"}],
        "custom_args": {"tenant": "acme"},
        "headers": {
            "List-Unsubscribe": "<https://cadencia.example/u/1>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
        "asm": {"group_id": 42},
    }
    body.update(extra)
    return body


def unique(local: str) -> str:
    return f"{local}+{uuid.uuid4().hex[:8]}@example.com"


def verified_events(receiver: Receiver, public_key: str) -> list[dict[str, Any]]:
    webhook = EventWebhook(public_key)
    events: list[dict[str, Any]] = []
    for post in receiver.at("/sendgrid/events"):
        assert webhook.verify_signature(
            post.body.decode(),
            post.headers[EventWebhookHeader.SIGNATURE.lower()],
            post.headers[EventWebhookHeader.TIMESTAMP.lower()],
        )
        events += orjson.loads(post.body)
    return events


async def wait_events(receiver: Receiver, public_key: str, count: int) -> list[dict[str, Any]]:
    await wait_for(lambda: len(verified_events(receiver, public_key)) >= count, what=f"{count} events")
    return verified_events(receiver, public_key)


async def test_official_client_sends_and_events_verify(sandbox: SandboxHandle, receiver: Receiver) -> None:
    client = sandbox.sendgrid_client()
    ok, bounce, click = unique("ana"), unique("bounce"), unique("click")
    response = await asyncio.to_thread(client.send, mail(ok, bounce, click))
    assert response.status_code == 202 and response.body in (b"", "")
    xmid = response.headers["X-Message-Id"]
    assert len(xmid) == 22

    key = await sandbox.sendgrid_public_key()
    events = await wait_events(receiver, key, 8)
    by = {(e["email"], e["event"]): e for e in events}
    assert set(by) == {
        (ok, "processed"),
        (ok, "delivered"),
        (bounce, "processed"),
        (bounce, "bounce"),
        (click, "processed"),
        (click, "delivered"),
        (click, "open"),
        (click, "click"),
    }
    delivered = by[(ok, "delivered")]
    assert delivered["sg_message_id"].startswith(xmid + ".")
    assert delivered["tenant"] == "acme" and delivered["dispatch_id"] == "d-0"  # custom_args are top-level
    assert delivered["asm_group_id"] == 42 and isinstance(delivered["timestamp"], int)
    assert by[(bounce, "bounce")]["type"] == "bounce" and by[(bounce, "bounce")]["status"] == "5.1.1"
    assert len({e["sg_event_id"] for e in events}) == len(events)
    # A tampered body fails verification, as it would in production.
    post = receiver.at("/sendgrid/events")[0]
    assert not EventWebhook(key).verify_signature(
        post.body.decode().replace("processed", "delivered"),
        post.headers["x-twilio-email-event-webhook-signature"],
        post.headers["x-twilio-email-event-webhook-timestamp"],
    )
    recorded = await sandbox.requests(provider="sendgrid", to=ok)
    assert recorded[0]["json"]["headers"]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


async def test_public_key_also_served_at_sendgrids_endpoint(sandbox: SandboxHandle) -> None:
    client = sandbox.sendgrid_client()
    response = await asyncio.to_thread(client.client.user.webhooks.event.settings.signed.get)
    assert orjson.loads(response.body)["public_key"] == await sandbox.sendgrid_public_key()


async def test_webhook_url_can_be_changed(sandbox: SandboxHandle, receiver: Receiver) -> None:
    await sandbox.set_sendgrid_webhook(receiver.url + "/other")
    await asyncio.to_thread(sandbox.sendgrid_client().send, mail(unique("spam")))
    posts = await receiver.wait("/other", 3)
    assert [orjson.loads(p.body)[0]["event"] for p in posts] == ["processed", "delivered", "spamreport"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"personalizations": []}, "personalizations"),
        ({"from": None}, "from.email"),
        ({"subject": None}, "subject"),
        ({"content": None}, "content"),
        ({"content": [{"type": "text/plain", "value": ""}]}, "content.0.value"),
        ({"send_at": int(time.time()) + 80 * 3600}, "send_at"),
        ({"custom_args": {"n": 1}}, "custom_args"),
        ({"asm": {"group_id": "x"}}, "asm.group_id"),
    ],
)
async def test_validation_errors_are_bad_requests(sandbox: SandboxHandle, body: dict, field: str) -> None:
    payload = {k: v for k, v in {**mail(unique("ana")), **body}.items() if v is not None}
    with pytest.raises(BadRequestsError) as err:
        await asyncio.to_thread(sandbox.sendgrid_client().send, payload)
    assert err.value.status_code == 400
    errors = orjson.loads(err.value.body)["errors"]
    assert field in [e["field"] for e in errors]
    assert all(set(e) == {"message", "field", "help"} for e in errors)


async def test_template_without_content_or_subject_is_accepted(sandbox: SandboxHandle) -> None:
    payload = mail(unique("ana"), template_id="d-0123456789abcdef")
    del payload["content"], payload["subject"]
    response = await asyncio.to_thread(sandbox.sendgrid_client().send, payload)
    assert response.status_code == 202


async def test_wrong_key_is_401(sandbox: SandboxHandle) -> None:
    client = SendGridAPIClient("SG.wrong", host=sandbox.url)
    with pytest.raises(UnauthorizedError) as err:
        await asyncio.to_thread(client.send, mail(unique("ana")))
    assert orjson.loads(err.value.body)["errors"][0]["field"] is None


async def test_rate_limit_fault_is_429(sandbox: SandboxHandle) -> None:
    await sandbox.set_faults(provider="sendgrid", rate_limit_next=1, retry_after_s=2)
    client = sandbox.sendgrid_client()
    with pytest.raises(TooManyRequestsError) as err:
        await asyncio.to_thread(client.send, mail(unique("ana")))
    assert err.value.headers["Retry-After"] == "2"
    response = await asyncio.to_thread(client.send, mail(unique("ana")))
    assert response.status_code == 202
