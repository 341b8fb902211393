"""What a channel plugs into the dispatch pipeline, and what one send returns.

A channel service gives :class:`~shared.channels.dispatch.DispatchHandler` a :class:`ChannelAdapter`
(compose the provider request from a rendered template, send it); the pipeline hands back a
:class:`SendResult` per dispatch. :func:`resume_record` is what the durable retry path stores to resume a
send outside its consumer batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

import orjson

from shared.events.contracts import Channel, ContactDispatched, ContactDispatchedEvent, TemplatePublished
from shared.providers.base import Accepted
from shared.templates import RenderedMessage

DEADLINE = "deadline"
EXPIRED: Literal["expired"] = "expired"
#: A send deferred to the durable retry path; its row waits for ``next_attempt_at``.
RETRYING = "retrying"


@dataclass(frozen=True)
class OutboundMessage:
    """What one channel hands its provider: the address, the rate-limit key, the request payload
    (Twilio's form parameters, SendGrid's JSON mail body)."""

    to: str
    sender: str
    payload: dict[str, Any]


class Unsendable(Exception):
    """The rendered template cannot make a message for this channel (e.g. no body): fail the dispatch."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


class ChannelAdapter(Protocol):
    """What a channel adds to the shared pipeline: composing its provider request, and sending it."""

    channel: Channel
    provider: str
    #: Seconds a provider request keeps contacting the debtor after it leaves (a call rings): it must
    #: leave this long before ``send_before``.
    lead_time_s: float

    async def compose(
        self, dispatch: ContactDispatched, rendered: RenderedMessage, status_callback: str
    ) -> OutboundMessage: ...

    async def send(self, message: OutboundMessage) -> Accepted: ...


class TemplateSource(Protocol):
    async def get(self, key: str, version: int) -> TemplatePublished: ...


@dataclass(frozen=True)
class SendResult:
    """How a send ended; ``retry``: every attempt refused unprocessed, the next is due at ``retry_at``
    (the durable retry path resumes it, ``resume`` the request to record for it); ``stopped``: the
    process is stopping between retries, nothing was processed."""

    kind: Literal["sent", "rejected", "unknown", "deadline", "expired", "retry", "stopped"]
    attempts: int
    accepted: Accepted | None = None
    error_code: str | None = None
    error_message: str | None = None
    retry_at: datetime | None = None
    resume: str | None = None



def resume_record(event: ContactDispatchedEvent, message: OutboundMessage) -> str:
    """What the durable retry path needs to resume a send: the dispatch event and the composed request."""
    return orjson.dumps({
        "event": event.model_dump(mode="json"),
        "message": {"to": message.to, "sender": message.sender, "payload": message.payload},
    }).decode()


def load_resume(record: str) -> tuple[ContactDispatchedEvent, OutboundMessage]:
    data = orjson.loads(record)
    return ContactDispatchedEvent.model_validate(data["event"]), OutboundMessage(**data["message"])
