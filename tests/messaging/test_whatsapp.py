"""WhatsApp end to end: Content templates outside the 24-hour window, free-form inside it."""

from __future__ import annotations

from typing import Any

import orjson

import services.whatsapp.app as wa_app
import services.whatsapp.settings as wa_settings
from services.sandbox.testing import SandboxHandle
from shared.config import KafkaSettings
from tests.channel_harness import (
    CONTENT_SID,
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


class WhatsApp:
    Settings = wa_settings.Settings
    create_app = staticmethod(wa_app.create_app)


DELIVERY = "cadencia.contact.delivery_updated.v1"
RESPONSE = "cadencia.contact.response_received.v1"


def deliveries(reader: TopicReader, dispatch_id: str) -> list[Any]:
    return [e.data for e in reader.of_type(DELIVERY) if e.data.dispatch_id == dispatch_id]


async def test_content_template_outside_the_window_free_form_after_an_inbound_message(
    kafka_settings: KafkaSettings, database_url: str, sandbox: SandboxHandle, outcomes: TopicReader,
    publisher: Publisher, group: str,
) -> None:
    settings = service_settings(WhatsApp, kafka_settings, database_url, sandbox, free_port(), group=group)
    await publisher.template(template_event(
        "wa_reminder", "whatsapp", content_sid=CONTENT_SID,
        content_variables={"1": "{{ debtor | first_name }}", "2": "{{ account.balance | money }}"},
    ))
    await publisher.template(template_event("wa_freeform", "whatsapp"))
    number = unique_number("0006")
    first = dispatch_event("whatsapp", number, "wa_reminder")
    no_template = dispatch_event("whatsapp", unique_number("0007"), "wa_freeform")
    async with running_service(WhatsApp, settings) as service:
        inbound_url = f"{service.url}/webhooks/twilio/inbound"
        await template_cached(service, "wa_reminder")
        await template_cached(service, "wa_freeform")
        await publisher.dispatch(first)
        await publisher.dispatch(no_template)
        await wait_for(lambda: any(d.status == "delivered" for d in deliveries(outcomes, first.data.dispatch_id)))
        [request] = await sandbox_messages(sandbox, f"whatsapp:{number}")
        form = request["form"]
        assert form["To"] == f"whatsapp:{number}" and form["From"] == "whatsapp:+15005550006"
        assert form["ContentSid"] == CONTENT_SID and "Body" not in form
        assert orjson.loads(form["ContentVariables"]) == {"1": "María", "2": "$1,234.50"}

        # A body without an approved template, outside the window: Twilio fails it with 63016.
        await wait_for(lambda: any(d.status == "failed" for d in deliveries(outcomes, no_template.data.dispatch_id)))
        failed = next(d for d in deliveries(outcomes, no_template.data.dispatch_id) if d.status == "failed")
        assert failed.error_code == "63016"

        # The debtor writes: the window opens, and the next message goes free-form.
        await sandbox.inbound(f"whatsapp:{number}", "whatsapp:+15005550006", "hola, ¿cuánto debo?", url=inbound_url)
        [reply] = await outcomes.wait_count(RESPONSE, 1)
        assert (reply.data.kind, reply.data.channel) == ("reply", "whatsapp")
        assert reply.data.debtor_id == first.data.debtor_id
        second = dispatch_event("whatsapp", number, "wa_reminder", debtor_id=first.data.debtor_id)
        await publisher.dispatch(second)
        await wait_for(lambda: any(d.status == "delivered" for d in deliveries(outcomes, second.data.dispatch_id)))
        requests = await sandbox_messages(sandbox, f"whatsapp:{number}")
        assert len(requests) == 2
        free_form = requests[1]["form"]
        assert "ContentSid" not in free_form
        assert free_form["Body"] == "Hola María, tu saldo es $1,234.50. Paga en https://pay.example/a1"
