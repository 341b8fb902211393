"""SMS end to end: the real broker, the service over HTTP, the sandbox standing in for Twilio."""

from __future__ import annotations

from typing import Any

import services.sms.app as sms_app
import services.sms.settings as sms_settings
from services.sandbox.testing import SandboxHandle
from shared.config import KafkaSettings
from tests.channels.harness import (
    Publisher,
    dispatch_event,
    free_port,
    running_service,
    sandbox_messages,
    service_settings,
    template_cached,
    template_event,
    unique_number,
)
from tests.helpers import TopicReader, wait_for


class SMS:
    Settings = sms_settings.Settings
    create_app = staticmethod(sms_app.create_app)


DELIVERY = "cadencia.contact.delivery_updated.v1"
RESPONSE = "cadencia.contact.response_received.v1"


def statuses(reader: TopicReader, dispatch_id: str) -> list[str]:
    return [e.data.status for e in reader.of_type(DELIVERY) if e.data.dispatch_id == dispatch_id]


def deliveries(reader: TopicReader, dispatch_id: str) -> list[Any]:
    return [e for e in reader.of_type(DELIVERY) if e.data.dispatch_id == dispatch_id]


async def test_dispatch_is_sent_once_rendered_with_status_callback_and_delivered(
    kafka_settings: KafkaSettings, database_url: str, sandbox: SandboxHandle, outcomes: TopicReader,
    publisher: Publisher, group: str,
) -> None:
    settings = service_settings(SMS, kafka_settings, database_url, sandbox, free_port(), group=group)
    await publisher.template(template_event("reminder", "sms"))
    to = unique_number("0001")
    event = dispatch_event("sms", to, "reminder")
    async with running_service(SMS, settings) as service:
        await template_cached(service, "reminder")
        await publisher.dispatch(event)
        await wait_for(lambda: "delivered" in statuses(outcomes, event.data.dispatch_id), what="delivered")
        sent = await sandbox_messages(sandbox, to)
        assert len(sent) == 1
        form = sent[0]["form"]
        assert form["Body"] == "Hola María, tu saldo es $1,234.50. Paga en https://pay.example/a1"
        assert form["From"] == "+15005550006"
        assert form["StatusCallback"] == f"{service.url}/webhooks/twilio/status?dispatch={event.data.dispatch_id}"
        assert statuses(outcomes, event.data.dispatch_id) == ["accepted", "sent", "delivered"] or set(
            statuses(outcomes, event.data.dispatch_id)
        ) == {"accepted", "sent", "delivered"}
        delivered = deliveries(outcomes, event.data.dispatch_id)[-1]
        assert delivered.subject == event.data.debtor_id
        assert delivered.data.provider == "twilio" and delivered.data.provider_id == sent[0]["sid"]
