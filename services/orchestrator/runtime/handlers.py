"""Entry points: each consumed event (or HTTP request) becomes one transaction of its service function."""

from __future__ import annotations

from typing import get_args

from services.orchestrator.runtime import service
from services.orchestrator.runtime.service import IntakeResult, Runtime
from shared.bus import PermanentError, RecordMeta
from shared.events import AnyEvent, CloudEvent
from shared.events.contracts import (
    CallRecordedEvent,
    ContactRequestedEvent,
    DeliveryUpdatedEvent,
    ResponseReceivedEvent,
)

ACCOUNT_EVENTS: tuple[type[CloudEvent], ...] = get_args(service.AccountEvent)
REQUEST_TYPES = {ContactRequestedEvent.model_fields["type"].default}
ACCOUNT_TYPES = {cls.model_fields["type"].default for cls in ACCOUNT_EVENTS}
OUTCOME_TYPES = {DeliveryUpdatedEvent.model_fields["type"].default, ResponseReceivedEvent.model_fields["type"].default,
                 CallRecordedEvent.model_fields["type"].default}


async def apply_request(rt: Runtime, event: ContactRequestedEvent) -> IntakeResult:
    """The one path of a contact request, whether it came from Kafka or ``POST /v1/contact-requests``."""
    async with rt.unit_of_work() as session:
        return await service.intake(rt, session, event, rt.ctx.clock())


class EventHandlers:
    """Routes each topic's events to its service function; one error boundary is the runner's."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def __call__(self, event: AnyEvent, meta: RecordMeta) -> None:
        topics, rt = self.rt.ctx.topics, self.rt
        if meta.topic == topics.contact_requests and isinstance(event, ContactRequestedEvent):
            await apply_request(rt, event)
            return
        if meta.topic == topics.account_events and isinstance(event, ACCOUNT_EVENTS):
            async with rt.unit_of_work() as session:
                await service.apply_account_event(rt, session, event, rt.ctx.clock())  # type: ignore[arg-type]
            return
        if meta.topic == topics.contact_outcomes and isinstance(event, DeliveryUpdatedEvent):
            async with rt.unit_of_work() as session:
                await service.apply_delivery(rt, session, event.id, event.data, rt.ctx.clock())
            return
        if meta.topic == topics.contact_outcomes and isinstance(event, ResponseReceivedEvent):
            async with rt.unit_of_work() as session:
                await service.apply_response(rt, session, event.id, event.data, rt.ctx.clock())
            return
        if meta.topic == topics.contact_outcomes and isinstance(event, CallRecordedEvent):
            from services.orchestrator.recordings.service import apply_recording

            async with rt.unit_of_work() as session:
                await apply_recording(rt, session, event.id, event.data, rt.ctx.clock())
            return
        raise PermanentError(f"{event.type} does not belong on {meta.topic}")
