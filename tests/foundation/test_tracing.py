"""W3C trace context: parsed leniently, stamped on every event published, continued by consumers and HTTP."""

from __future__ import annotations

import json
import logging

import httpx
import pytest
import structlog

from shared.app import build_app
from shared.config import ServiceSettings
from shared.events.contracts import PromiseBroken, PromiseBrokenEvent
from shared.logging import configure_logging, get_logger
from shared.tracing import (
    TraceContext,
    callback_url,
    context_of,
    continued,
    current,
    parse_traceparent,
    stamped,
    trace_id_for,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE}-00f067aa0ba902b7-01"


def event(correlation: str | None = None, traceparent: str | None = None) -> PromiseBrokenEvent:
    return PromiseBrokenEvent(subject="deb-1", correlationid=correlation, traceparent=traceparent,
                              data=PromiseBroken(debtor_id="deb-1", account_id="a1"))


@pytest.mark.parametrize("value", [
    None, "", "garbage", f"01-{TRACE}-00f067aa0ba902b7-01", f"00-{'0' * 32}-00f067aa0ba902b7-01",
    f"00-{TRACE}-{'0' * 16}-01", f"00-{TRACE[:-1]}-00f067aa0ba902b7-01",
])
def test_an_invalid_traceparent_is_ignored_not_an_error(value: str | None) -> None:
    assert parse_traceparent(value) is None
    assert context_of(event("req-1", value)).trace_id == trace_id_for("req-1")  # the contact's derived trace


def test_events_published_in_a_context_are_its_children_and_never_lend_it_to_another_contact() -> None:
    parent = context_of(event("req-1", PARENT))
    assert (parent.trace_id, parent.correlation) == (TRACE, "req-1")
    with continued(parent):
        same = parse_traceparent(stamped(event("req-1")).traceparent)
        uncorrelated = parse_traceparent(stamped(event(None)).traceparent)
        other = parse_traceparent(stamped(event("req-2")).traceparent)
    assert same is not None and same.trace_id == TRACE and same.span_id != parent.span_id
    assert uncorrelated is not None and uncorrelated.trace_id == TRACE
    assert other is not None and other.trace_id == trace_id_for("req-2")
    assert current() is None  # the context ends with its block
    kept = stamped(event("req-1", PARENT))
    assert kept.traceparent == PARENT  # an event's own trace is never replaced
    # Outside any context: derived from the correlation id, so one contact's events still share a trace.
    first, second = stamped(event("req-3")), stamped(event("req-3"))
    assert {context_of(first).trace_id, context_of(second).trace_id} == {trace_id_for("req-3")}
    assert first.traceparent != second.traceparent


def test_provider_callback_urls_carry_the_trace_and_http_requests_continue_it() -> None:
    with continued(TraceContext(TRACE, "00f067aa0ba902b7")):
        assert callback_url("https://x.example/s?dispatch=d1") == f"https://x.example/s?dispatch=d1&traceparent={PARENT}"
    assert callback_url("https://x.example/s") == "https://x.example/s"


async def test_http_requests_continue_a_traceparent_header_or_query_parameter() -> None:
    app = build_app(ServiceSettings(), "t")

    @app.get("/trace")
    async def trace() -> dict[str, str | None]:
        context = current()
        return {"trace_id": context.trace_id if context else None}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        assert (await client.get("/trace", headers={"traceparent": PARENT})).json() == {"trace_id": TRACE}
        assert (await client.get("/trace", params={"traceparent": PARENT})).json() == {"trace_id": TRACE}
        assert (await client.get("/trace")).json() == {"trace_id": None}


def test_json_logs_carry_the_trace_id(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "json")
    try:
        # A trace id of digits only must not be masked as if it were a phone number.
        digits = "12345678901234567890123456789012"
        with continued(TraceContext(digits, "1234567890123456")):
            get_logger("t").info("dispatch sent", to="+525512345678")
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["event"] == "dispatch sent" and line["trace_id"] == digits and line["span_id"] == "1234567890123456"
    assert line["to"] != "+525512345678"


def test_an_event_scope_binds_its_ids_and_trace_and_restores_what_was_bound_before() -> None:
    from shared.bus.consumer import event_scope

    outer, inner = event("req-1", PARENT), event("req-2")
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(event_id="before", service="sms")
    try:
        with event_scope(outer):
            fields = structlog.contextvars.get_contextvars()
            assert (fields["event_id"], fields["correlation_id"], fields["trace_id"]) == (outer.id, "req-1", TRACE)
            with event_scope(inner):
                fields = structlog.contextvars.get_contextvars()
                assert (fields["event_id"], fields["correlation_id"]) == (inner.id, "req-2")
                assert fields["trace_id"] == trace_id_for("req-2")
            fields = structlog.contextvars.get_contextvars()
            assert (fields["event_id"], fields["trace_id"]) == (outer.id, TRACE)  # the outer scope's again
        assert structlog.contextvars.get_contextvars() == {"event_id": "before", "service": "sms"}
        with pytest.raises(RuntimeError), event_scope(outer):
            raise RuntimeError("the handler failed")
        assert structlog.contextvars.get_contextvars() == {"event_id": "before", "service": "sms"}
    finally:
        structlog.contextvars.clear_contextvars()
