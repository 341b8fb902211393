"""W3C trace context (``traceparent``) carried through events, so one contact is followed across services.

Every event carries ``traceparent`` as a CloudEvents extension attribute (the distributed tracing
extension). The context of the work in progress lives in a context variable:

* the consumer runner continues the trace of the event it handles; HTTP requests continue a
  ``traceparent`` header, or a ``traceparent`` query parameter (provider callbacks, which cannot send
  our headers, get it in the callback URL we hand the provider);
* every event published or staged in the outbox while that context is current gets a child
  ``traceparent`` of it (a new span id, the same trace id);
* an event with no trace of its own, published outside any context (an older producer, a deferred
  contact released later), gets a trace id derived from its ``correlationid``, the contact request
  it descends from: the private correlation field stays, and every event of one contact request that
  has no other context still shares one trace id.

Logs bind ``trace_id`` next to ``correlation_id``, so with JSON logs one query follows a contact.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import structlog

if TYPE_CHECKING:
    from shared.events.envelope import CloudEvent

TRACEPARENT_PATTERN = r"^00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"
_TRACEPARENT = re.compile(TRACEPARENT_PATTERN)
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16
#: Sampled: we do not sample, every contact is traced.
SAMPLED = "01"

E = TypeVar("E", bound="CloudEvent")


@dataclass(frozen=True)
class TraceContext:
    trace_id: str
    span_id: str
    flags: str = SAMPLED
    #: The contact request (correlation id) this context is about, when known: a context never lends
    #: its trace to another contact's event (a batch may mix contacts).
    correlation: str | None = None
    #: W3C ``tracestate`` (vendor data), passed on unchanged.
    state: str | None = None

    @property
    def traceparent(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-{self.flags}"

    def child(self) -> TraceContext:
        """The context of work caused by this one: same trace, a new span."""
        return TraceContext(self.trace_id, new_span_id(), self.flags, self.correlation, self.state)


def new_span_id() -> str:
    return secrets.token_hex(8)


def parse_traceparent(value: str | None) -> TraceContext | None:
    """A valid version-00 ``traceparent``, else None (W3C: an invalid one is ignored, not an error)."""
    if not value:
        return None
    value = value.strip().lower()
    if not _TRACEPARENT.match(value):
        return None
    _, trace_id, span_id, flags = value.split("-")
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return TraceContext(trace_id, span_id, flags)


def new_trace() -> TraceContext:
    return TraceContext(secrets.token_hex(16), new_span_id())


def trace_id_for(correlation_id: str) -> str:
    """The trace id of everything descending from one contact request without a trace of its own."""
    return hashlib.sha256(f"cadencia-trace:{correlation_id}".encode()).hexdigest()[:32]


_current: ContextVar[TraceContext | None] = ContextVar("cadencia_trace", default=None)


def current() -> TraceContext | None:
    return _current.get()


def context_of(event: CloudEvent) -> TraceContext:
    """The trace an event belongs to: its ``traceparent``, else derived from its correlation (or own) id."""
    # Only a declared correlation restricts lending: an event without one is its own contact's root.
    correlation = event.correlationid
    found = parse_traceparent(event.traceparent)
    if found is not None:
        return TraceContext(found.trace_id, found.span_id, found.flags, correlation, event.tracestate)
    return TraceContext(trace_id_for(correlation or event.id), new_span_id(), correlation=correlation)


@contextmanager
def continued(context: TraceContext | None) -> Iterator[TraceContext | None]:
    """Make ``context`` current (and bind ``trace_id`` to the logs) for the block."""
    if context is None:
        yield None
        return
    token = _current.set(context)
    # Bound and reset by token, as ``_current`` is: ``bound_contextvars`` copies the whole context
    # to find what it restores, and this runs per event and per callback.
    bound = structlog.contextvars.bind_contextvars(trace_id=context.trace_id, span_id=context.span_id)
    try:
        yield context
    finally:
        structlog.contextvars.reset_contextvars(**bound)
        _current.reset(token)


def stamped(event: E) -> E:
    """``event`` with a ``traceparent``: kept if it has one, else a child of the current context when
    that is about the same contact, else derived from its correlation id, else a new trace."""
    if event.traceparent is not None:
        return event
    context = current()
    correlation = event.correlationid
    if context is not None and (correlation is None or context.correlation in (None, correlation)):
        parent = context
    elif correlation:
        parent = TraceContext(trace_id_for(correlation), new_span_id(), correlation=correlation)
    else:
        parent = new_trace()
    child = parent.child()
    return event.model_copy(update={"traceparent": child.traceparent, "tracestate": event.tracestate or child.state})


def callback_url(url: str) -> str:
    """``url`` with the current ``traceparent`` as a query parameter, for providers' callbacks."""
    context = current()
    if context is None:
        return url
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}traceparent={context.traceparent}"
