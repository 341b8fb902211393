"""One contact followed across services by its W3C trace context (``traceparent`` on every event).

A backend's ``traceparent`` on a contact request is continued by the orchestrator's dispatch, the SMS
service's outcomes (including the delivery reported later by the provider's callback) and the
orchestrator's status events. A request without one gets a trace id derived from its id, the same
on every event of that contact: the correlation id stays compatible and still ties them together.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

import services.sms.app
import services.sms.settings
from services.orchestrator.app import create_app
from services.orchestrator.settings import Settings
from services.sandbox.testing import running_sandbox
from shared.bus import EventProducer
from shared.config import DatabaseSettings, KafkaSettings
from shared.events import Topics, encode_event
from shared.tracing import parse_traceparent, trace_id_for
from tests.channel_harness import free_port, running_service, service_settings
from tests.e2e.test_pipeline import next_lawful_noon, phone, request
from tests.helpers import TopicReader, wait_for

DELIVERY = "cadencia.contact.delivery_updated.v1"


def trace_ids(events: list[Any]) -> set[str | None]:
    return {(parse_traceparent(e.traceparent) or _Missing).trace_id for e in events}


class _Missing:
    trace_id = None


@pytest.mark.e2e
async def test_a_contact_keeps_one_trace_id_from_request_to_delivery_across_services(
    kafka_settings: KafkaSettings, tmp_path: Any
) -> None:
    noon = next_lawful_noon()
    topics = Topics(kafka_settings.topic_prefix)
    orchestrator = create_app(Settings(
        kafka=kafka_settings, database=DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path}/orchestrator.db"),
        consumer_group=f"{kafka_settings.topic_prefix}orchestrator", scheduler_interval=0.1,
    ), clock=lambda: noon)
    backend_trace = uuid.uuid4().hex
    traced = request("deb-traced", phone("0001")).model_copy(
        update={"traceparent": f"00-{backend_trace}-{uuid.uuid4().hex[:16]}-01"}
    )
    untraced = request("deb-untraced", phone("0001"))  # correlated by its id only
    producer = EventProducer(kafka_settings)
    async with (
        running_sandbox() as sandbox, orchestrator.router.lifespan_context(orchestrator),
        TopicReader(kafka_settings, topics.dispatch("sms"), topics.contact_outcomes, topics.contact_status) as seen,
    ):
        port = free_port()
        sms = service_settings(services.sms.settings, kafka_settings, f"sqlite+aiosqlite:///{tmp_path}/sms.db",
                               sandbox, port, group=f"{kafka_settings.topic_prefix}sms")
        async with running_service(services.sms.app, sms):
            await producer.start()
            try:
                for event in (traced, untraced):  # as a backend without our producer would: raw bytes
                    await (await producer.send_raw(topics.contact_requests, encode_event(event), event.key))
            finally:
                await producer.stop()

            def of_contact(contact: Any) -> list[Any]:
                return [e for e in seen.events if e.correlationid == contact.id]

            def delivered(contact: Any) -> bool:
                return any(e.type == DELIVERY and e.data.status == "delivered" for e in of_contact(contact))

            await wait_for(lambda: delivered(traced) and delivered(untraced), timeout=45, what="both delivered")
    for contact, trace_id in ((traced, backend_trace), (untraced, trace_id_for(untraced.id))):
        events = of_contact(contact)
        kinds = {(e.type, getattr(e.data, "status", None)) for e in events}
        # Made by the orchestrator, by the SMS consumer ("accepted", unless a callback committed first
        # superseded it) or its webhook ("sent"), and by the webhook (the provider's callbacks).
        assert {("cadencia.contact.dispatched.v1", None), (DELIVERY, "delivered")} <= kinds
        assert {(DELIVERY, "accepted"), (DELIVERY, "sent")} & kinds
        assert any(e.type == "cadencia.contact.status_changed.v1" for e in events)
        assert trace_ids(events) == {trace_id}, kinds
        assert len({e.traceparent for e in events}) == len({e.id for e in events})  # each event its own span
