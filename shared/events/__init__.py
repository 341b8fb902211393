"""Event contracts: CloudEvents 1.0 envelopes with frozen pydantic payloads, and the topic map.

Parse anything read from Kafka with :func:`parse_event`; it validates through a discriminated
union on ``type`` and raises :class:`pydantic.ValidationError` (or ``orjson.JSONDecodeError``)
for poison input, which the consumer runner dead-letters.
"""

from __future__ import annotations

from typing import Annotated

import orjson
from pydantic import Field, TypeAdapter

from shared.events.contracts import *  # noqa: F403
from shared.events.contracts import (
    CallRecordedEvent,
    CommunicationCeasedEvent,
    ContactDispatchedEvent,
    ContactRequestedEvent,
    DeadLetteredEvent,
    DebtorUpdatedEvent,
    DeliveryUpdatedEvent,
    DisputeOpenedEvent,
    DisputeResolvedEvent,
    PaymentReceivedEvent,
    PromiseBrokenEvent,
    PromiseMadeEvent,
    ResponseReceivedEvent,
    StatusChangedEvent,
    TemplatePublishedEvent,
)
from shared.events.envelope import CloudEvent, Contract, aware, new_id, utcnow
from shared.events.topics import TOPIC_OF_TYPE, Topics

AnyEvent = Annotated[
    ContactRequestedEvent
    | PaymentReceivedEvent
    | PromiseMadeEvent
    | PromiseBrokenEvent
    | DisputeOpenedEvent
    | DisputeResolvedEvent
    | CommunicationCeasedEvent
    | DebtorUpdatedEvent
    | ContactDispatchedEvent
    | DeliveryUpdatedEvent
    | ResponseReceivedEvent
    | CallRecordedEvent
    | StatusChangedEvent
    | TemplatePublishedEvent
    | DeadLetteredEvent,
    Field(discriminator="type"),
]

EVENT_TYPES: tuple[type[CloudEvent], ...] = (
    ContactRequestedEvent,
    PaymentReceivedEvent,
    PromiseMadeEvent,
    PromiseBrokenEvent,
    DisputeOpenedEvent,
    DisputeResolvedEvent,
    CommunicationCeasedEvent,
    DebtorUpdatedEvent,
    ContactDispatchedEvent,
    DeliveryUpdatedEvent,
    ResponseReceivedEvent,
    CallRecordedEvent,
    StatusChangedEvent,
    TemplatePublishedEvent,
    DeadLetteredEvent,
)

event_adapter: TypeAdapter[AnyEvent] = TypeAdapter(AnyEvent)


def parse_event(raw: bytes | str) -> AnyEvent:
    """Decode and validate one structured-mode CloudEvent."""
    return event_adapter.validate_python(orjson.loads(raw))


def encode_event(event: CloudEvent) -> bytes:
    """Serialise an event to its wire form (UTF-8 JSON, decimals as strings)."""
    return orjson.dumps(event.model_dump(mode="json", exclude_none=False))


__all__ = [
    "AnyEvent",
    "CloudEvent",
    "Contract",
    "EVENT_TYPES",
    "TOPIC_OF_TYPE",
    "Topics",
    "aware",
    "encode_event",
    "event_adapter",
    "new_id",
    "parse_event",
    "utcnow",
]
