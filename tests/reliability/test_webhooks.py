"""Forged, re-signed and replayed provider callbacks are refused, change nothing, and are counted.

For each channel a real dispatch goes through the sandbox, which calls the service back with correctly
signed callbacks. Then, at the same webhook:

* **forged**: the genuine callback with a made-up signature, and with none → 403;
* **re-signed with another key**: the genuine callback signed with another Twilio auth token (another
  ECDSA key for SendGrid) → 403;
* **replayed**: the genuine callback again, correctly signed → accepted (a provider retries on
  error, so a 2xx stops it) but applied once: no receipt, send-log change or outcome is added.

``cadencia_webhook_rejections_total{channel, reason}`` on ``/metrics`` counts each: ``forged`` for the
first two kinds, ``replayed`` for the last (per SendGrid event).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, select

from services.sandbox.signing import EventWebhookSigner
from services.sandbox.testing import SandboxHandle
from shared.channels.models import ProviderReceipt, SendLogRecord
from shared.config import KafkaSettings
from shared.providers.sendgrid import SIGNATURE_HEADER, TIMESTAMP_HEADER
from shared.providers.twilio import TwilioSignature
from tests.channel_harness import Publisher, running_service, template_cached
from tests.helpers import TopicReader, wait_for
from tests.messaging.test_metrics import DELIVERY, sample, setup_for

FORM = "application/x-www-form-urlencoded"
GENUINE_KIND = {"sms": "message-status", "whatsapp": "message-status", "voice": "call-status", "email": "event"}


async def _state(service: Any, dispatch_id: str) -> tuple[int, Any, Any]:
    """What a callback may change: the receipts, and the send-log row's status and last update."""
    async with service.app.state.db.sessions() as session:
        receipts = await session.scalar(select(func.count()).select_from(ProviderReceipt))
        row = await session.get(SendLogRecord, dispatch_id)
        assert row is not None
        return int(receipts or 0), row.status, row.updated_at


async def _genuine(sandbox: SandboxHandle, channel: str, service_url: str) -> dict[str, Any]:
    """A callback the sandbox made to the service and the service applied."""
    async def found() -> dict[str, Any] | None:
        for entry in await sandbox.callbacks(kind=GENUINE_KIND[channel]):
            if str(entry["url"]).startswith(service_url) and entry.get("status") in (200, 204):
                return entry
        return None

    entry: dict[str, Any] = await wait_for(found, timeout=30, what=f"a genuine {channel} callback")
    return entry


async def _sandbox_idle(sandbox: SandboxHandle) -> bool:
    """No lifecycle step of the dispatch pending and no callback in flight: the genuine ones are all in."""
    status = (await sandbox.http.get("/sandbox/status")).json()
    return bool(status["pending"] == 0 and status["callbacks_in_flight"] == 0)


def _twilio_attempts(entry: dict[str, Any], token: str) -> dict[str, tuple[str, dict[str, str]]]:
    """(expected refusal, headers) of each attempt at the genuine Twilio callback ``entry``."""
    url, params = entry["url"], entry["params"]
    return {
        "made-up signature": ("forged", {"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"}),
        "unsigned": ("forged", {}),
        "re-signed with another token": ("forged", {"X-Twilio-Signature":
                                                    TwilioSignature("another-auth-token").sign(url, params)}),
        "replayed": ("replayed", {"X-Twilio-Signature": TwilioSignature(token).sign(url, params)}),
    }


def _sendgrid_attempts(body: bytes, signer: EventWebhookSigner) -> dict[str, tuple[str, dict[str, str]]]:
    now, stale = str(int(time.time())), str(int(time.time()) - 3600)
    other = EventWebhookSigner(ec.generate_private_key(ec.SECP256R1()))
    return {
        "made-up signature": ("forged", {SIGNATURE_HEADER: "bm90IGEgc2lnbmF0dXJl", TIMESTAMP_HEADER: now}),
        "unsigned": ("forged", {}),
        "re-signed with another key": ("forged", {SIGNATURE_HEADER: other.sign(now, body), TIMESTAMP_HEADER: now}),
        "replayed long after": ("replayed", {SIGNATURE_HEADER: signer.sign(stale, body), TIMESTAMP_HEADER: stale}),
        "replayed": ("replayed", {SIGNATURE_HEADER: signer.sign(now, body), TIMESTAMP_HEADER: now}),
    }


@pytest.mark.parametrize("channel", ["sms", "whatsapp", "voice", "email"])
async def test_forged_resigned_and_replayed_callbacks_are_refused_change_nothing_and_are_counted(
    channel: str, kafka_settings: KafkaSettings, tmp_path: Path, sandbox: SandboxHandle, outcomes: TopicReader,
    publisher: Publisher, group: str,
) -> None:
    module, settings, template, event, _ = setup_for(
        channel, kafka_settings, f"sqlite+aiosqlite:///{tmp_path / 'channel.db'}", sandbox, group)
    if channel == "email":
        await sandbox.set_sendgrid_webhook(f"{settings.public_url}/webhooks/sendgrid/events")
    await publisher.template(template)
    dispatch_id = event.data.dispatch_id
    async with running_service(module, settings) as service:
        await template_cached(service, "reminder")
        await publisher.dispatch(event)
        genuine = await _genuine(sandbox, channel, service.url)
        await wait_for(lambda: any(e.data.dispatch_id == dispatch_id for e in outcomes.of_type(DELIVERY)),
                       timeout=30, what="an outcome")
        await wait_for(lambda: _sandbox_idle(sandbox), timeout=60, what="the sandbox done with the dispatch")
        if channel == "email":
            body = orjson.dumps(genuine["events"])
            attempts = _sendgrid_attempts(body, sandbox.app.state.signer)
            content, content_type, replayed_each = body, "application/json", len(genuine["events"])
        else:
            attempts = _twilio_attempts(genuine, sandbox.settings.twilio.auth_token.get_secret_value())
            content, content_type, replayed_each = None, FORM, 1
        before = await _state(service, dispatch_id)
        expected = {"forged": 0, "replayed": 0}
        async with httpx.AsyncClient(timeout=10) as http:
            for what, (reason, headers) in attempts.items():
                request: dict[str, Any] = {"content": content} if content is not None else {"data": genuine["params"]}
                answer = await http.post(genuine["url"], headers={"content-type": content_type, **headers}, **request)
                accepted = what == "replayed"
                assert answer.status_code == (204 if accepted else 403), (what, answer.text)
                if not accepted:
                    assert answer.headers["content-type"].startswith("application/problem+json"), what
                expected[reason] += replayed_each if accepted else 1
            metrics = (await http.get(f"{service.url}/metrics")).text
        assert await _state(service, dispatch_id) == before  # nothing applied, nothing recorded
    for reason, count in expected.items():
        assert sample(metrics, "cadencia_webhook_rejections_total", channel=channel, reason=reason) == count, reason
    statuses = [e.data.status for e in outcomes.of_type(DELIVERY) if e.data.dispatch_id == dispatch_id]
    assert len(statuses) == len(set(statuses))  # each status reported once
