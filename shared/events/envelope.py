"""CloudEvents 1.0 structured-mode envelope shared by every Cadencia event."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, overload
from uuid import uuid4

from pydantic import BaseModel, ConfigDict, Field


def utcnow() -> datetime:
    return datetime.now(UTC)


@overload
def aware(value: datetime) -> datetime: ...
@overload
def aware(value: None) -> None: ...
def aware(value: datetime | None) -> datetime | None:
    """An instant in UTC; one without an offset (SQLite gives them back naive) is read as UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def new_id() -> str:
    return str(uuid4())


class Contract(BaseModel):
    """Base for event payloads: frozen, unknown fields refused so typos surface at the edge."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class CloudEvent(BaseModel):
    """The envelope. ``id`` is the idempotency key; ``subject`` (and the Kafka key) is the debtor id."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    specversion: str = Field("1.0", pattern=r"^1\.0$")
    id: str = Field(default_factory=new_id, min_length=1, max_length=200)
    source: str = Field("cadencia", min_length=1, max_length=200)
    type: str
    time: datetime = Field(default_factory=utcnow)
    subject: str = Field(min_length=1, max_length=200)
    datacontenttype: str = "application/json"
    #: CloudEvents extension attribute: the request this event descends from, for tracing.
    correlationid: str | None = Field(None, max_length=200)
    #: CloudEvents distributed tracing extension: the W3C trace context of the work that made this
    #: event (``00-<trace id>-<span id>-<flags>``); stamped on publish, see ``shared.tracing``. An
    #: invalid value is ignored (a new trace starts), as W3C asks, not dead-lettered.
    traceparent: str | None = Field(None, max_length=200)
    tracestate: str | None = Field(None, max_length=512)
    data: Any

    @property
    def key(self) -> bytes:
        """Kafka key: the debtor id keeps one debtor's events ordered on one partition."""
        return self.subject.encode()
