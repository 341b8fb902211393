"""Every channel service's /metrics, scraped after a real send through the sandbox: sends by
channel/status/error, provider latency and rate-limit wait histograms, webhook rejections,
consumer lag and batch sizes, and HTTP request metrics."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest

import services.sms.app as sms_app
import services.sms.settings as sms_settings
import services.whatsapp.app as wa_app
import services.whatsapp.settings as wa_settings
from services.sandbox.testing import SandboxHandle
from shared.config import KafkaSettings
from shared.events.contracts import ContactDispatchedEvent, TemplatePublishedEvent
from tests.channel_harness import (
    Publisher,
    dispatch_event,
    free_port,
    running_service,
    service_settings,
    template_cached,
    template_event,
    unique_number,
)
from tests.email.harness import Email, address, email_settings_for, email_template
from tests.helpers import TopicReader, wait_for
from tests.voice.test_voice import Voice, settings_for, voice_dispatch, voice_template

DELIVERY = "cadencia.contact.delivery_updated.v1"
FORM = "application/x-www-form-urlencoded"


class SMS:
    Settings = sms_settings.Settings
    create_app = staticmethod(sms_app.create_app)


class WhatsApp:
    Settings = wa_settings.Settings
    create_app = staticmethod(wa_app.create_app)


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample of the exposition text, or None when absent."""
    for line in text.splitlines():
        match = re.fullmatch(rf"{re.escape(name)}\{{(.*)\}} (\S+)", line)
        if match is None:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1)))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(2))
    return None


def setup_for(channel: str, kafka: KafkaSettings, db: str, sandbox: SandboxHandle,
              group: str) -> tuple[Any, Any, TemplatePublishedEvent, ContactDispatchedEvent, str]:
    """(service module, settings, template, dispatch, the webhook path a forged request goes to)."""
    if channel == "sms":
        settings = service_settings(SMS, kafka, db, sandbox, free_port(), group=group)
        return SMS, settings, template_event("reminder", "sms"), dispatch_event("sms", unique_number("0001"),
                                                                               "reminder"), "/webhooks/twilio/status"
    if channel == "whatsapp":
        settings = service_settings(WhatsApp, kafka, db, sandbox, free_port(), group=group)
        return (WhatsApp, settings, template_event("reminder", "whatsapp", content_sid="HX" + "0" * 32),
                dispatch_event("whatsapp", unique_number("0002"), "reminder"), "/webhooks/twilio/status")
    if channel == "email":
        settings = email_settings_for(kafka, db, sandbox, free_port(), group=group)
        return (Email, settings, email_template("reminder"), dispatch_event("email", address("maria"), "reminder"),
                "/webhooks/sendgrid/events")
    settings = settings_for(kafka, db, sandbox, group)
    return Voice, settings, voice_template("reminder"), voice_dispatch(unique_number("0003"), "reminder"), \
        "/webhooks/twilio/call-status"


@pytest.mark.parametrize("channel", ["sms", "whatsapp", "email", "voice"])
async def test_metrics_after_a_send_show_sends_latency_waits_rejections_lag_batches_and_http(
    channel: str, kafka_settings: KafkaSettings, tmp_path: Path, sandbox: SandboxHandle, outcomes: TopicReader,
    publisher: Publisher, group: str,
) -> None:
    module, settings, template, event, webhook = setup_for(
        channel, kafka_settings, f"sqlite+aiosqlite:///{tmp_path / 'channel.db'}", sandbox, group)
    if channel == "email":
        await sandbox.set_sendgrid_webhook(f"{settings.public_url}/webhooks/sendgrid/events")
    await publisher.template(template)
    async with running_service(module, settings) as service:
        await template_cached(service, "reminder")
        await publisher.dispatch(event)
        await wait_for(lambda: any(e.data.dispatch_id == event.data.dispatch_id for e in outcomes.of_type(DELIVERY)),
                       timeout=30, what=f"{channel} outcome")
        async with httpx.AsyncClient(base_url=service.url) as http:
            forged = await http.post(webhook, content=b"x=1", headers={"content-type": FORM})
            assert forged.status_code == 403
            text = (await http.get("/metrics")).text

    assert sample(text, "cadencia_channel_sends_total", channel=channel, status="accepted", error="") == 1
    assert sample(text, "cadencia_provider_request_seconds_count", channel=channel) == 1
    assert (sample(text, "cadencia_provider_request_seconds_bucket", channel=channel, le="+Inf") or 0) == 1
    assert sample(text, "cadencia_rate_limit_wait_seconds_count", channel=channel) == 1
    assert sample(text, "cadencia_webhook_rejections_total", channel=channel, reason="forged") == 1
    consumer = f"{settings.service_name}-dispatch"
    assert (sample(text, "cadencia_consumer_batch_size_count", consumer=consumer) or 0) >= 1
    assert (sample(text, "cadencia_consumer_batch_size_sum", consumer=consumer) or 0) >= 1
    topic = f"{kafka_settings.topic_prefix}dispatch.{channel}"
    assert sample(text, "cadencia_consumer_lag", consumer=consumer, topic=topic) == 0  # the one dispatch was read
    assert sample(text, "cadencia_http_requests_total", method="POST", route=webhook, status="403") == 1
    assert (sample(text, "cadencia_http_request_seconds_count", method="POST", route=webhook) or 0) >= 1
    # The send's result (at least) was committed by the group writer.
    writer = f"{settings.service_name}-writer"
    assert (sample(text, "cadencia_group_commit_writes_count", writer=writer) or 0) >= 1
    assert (sample(text, "cadencia_group_commit_writes_sum", writer=writer) or 0) >= 1
    # Its event loop was timed while it ran (a timer every 0.1 s).
    assert (sample(text, "cadencia_event_loop_lag_seconds_bucket", le="+Inf") or 0) >= 1
