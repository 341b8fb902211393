"""SendGrid's signed event webhook: events as delivery updates and responses.

Events are correlated by the ``dispatch_id`` custom arg (else SendGrid's message id), deduplicated by
``sg_event_id`` and committed in groups by the service's writer; an unsubscribe event and the link
(:mod:`services.email.unsubscribe`) are one response per dispatch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from services.email.tokens import UnsubscribeTokens
from shared.channels.callbacks import ChannelWebhookContext, SendLogIndex, by_context, new_receipts, proven_sent
from shared.channels.models import SendLogView
from shared.channels.outcomes import advance, outcome_id, response_event, stage_opt_out
from shared.channels.sendlog import SendLogEntry
from shared.db import Outbox, OutboxBatch, Write, add_to_outbox
from shared.events.contracts import Channel
from shared.http import Problem
from shared.logging import get_logger
from shared.providers.sendgrid import SIGNATURE_HEADER, TIMESTAMP_HEADER, EventWebhookVerifier
from shared.tracing import continued, parse_traceparent

log = get_logger(__name__)

EVENTS_PATH = "/webhooks/sendgrid/events"

#: SendGrid event → ``DeliveryUpdated.status``. ``deferred`` (the receiving server asked to retry later)
#: is recorded only: it says nothing the message's status does not already say.
SENDGRID_STATUS: dict[str, str] = {
    "processed": "accepted",
    "delivered": "delivered",
    "bounce": "bounced",
    "dropped": "bounced",
    "open": "opened",
    "click": "clicked",
    "spamreport": "failed",
}
UNSUBSCRIBE_EVENTS = frozenset({"unsubscribe", "group_unsubscribe"})


@dataclass(kw_only=True)
class EmailWebhookContext(ChannelWebhookContext):
    """The email webhooks' context: the event webhook's verifier and the unsubscribe link's tokens."""

    verifier: EventWebhookVerifier
    tokens: UnsubscribeTokens
    channel: Channel = "email"
    provider: str = "sendgrid"


def get_email_context(request: Request) -> EmailWebhookContext:
    ctx: EmailWebhookContext = request.app.state.webhooks
    return ctx


EmailContextDep = Annotated[EmailWebhookContext, Depends(get_email_context)]


def x_message_id(sg_message_id: str) -> str:
    """``<X-Message-Id>.filterdrecv-…`` → the ``X-Message-Id`` the send answered with."""
    return sg_message_id.split(".", 1)[0]


def stage_unsubscribe(ctx: EmailWebhookContext, outbox: Outbox, row: SendLogView, now: datetime) -> None:
    # One unsubscribe per dispatch, whether it came by the link or by SendGrid's own unsubscribe.
    event = response_event(
        event_id=outcome_id("unsubscribe", row.dispatch_id), debtor_id=row.debtor_id, dispatch_id=row.dispatch_id,
        channel="email", kind="unsubscribe", text=None, address=row.address, source=ctx.source, occurred_at=now,
        correlation_id=row.request_id,
    )
    add_to_outbox(outbox, ctx.topics.contact_outcomes, event)


@dataclass(frozen=True)
class EmailEvent:
    """One SendGrid event, as far as we read it."""

    name: str
    event_id: str
    dispatch_id: str | None
    provider_id: str | None
    raw: dict[str, Any]
    received_at: datetime


def email_event(ctx: EmailWebhookContext, event: dict[str, Any]) -> EmailEvent | None:
    """The event to apply; ``None`` when it cannot be (no name or no ``sg_event_id``): ignored."""
    name = str(event.get("event") or "")
    event_id = str(event.get("sg_event_id") or "")
    if not name or not event_id:
        return None
    dispatch_id = event.get("dispatch_id")
    provider_id = x_message_id(str(event.get("sg_message_id") or "")) or None
    return EmailEvent(name, event_id, str(dispatch_id) if dispatch_id else None, provider_id, event, ctx.clock())


async def apply_event(ctx: EmailWebhookContext, event: dict[str, Any]) -> str:
    """Apply one SendGrid event (committed when this returns); returns what happened (for counters and tests)."""
    parsed = email_event(ctx, event)
    if parsed is None:
        return "ignored"
    outcome: str = await ctx.writer.write(_apply_events, (ctx, parsed))
    return outcome


async def _apply_events(
    session: AsyncSession, writes: Sequence[Write[tuple[EmailWebhookContext, EmailEvent]]]
) -> list[str]:
    """The group writer's kind for SendGrid events: receipts, rows and outcomes set-based."""
    results = [""] * len(writes)
    for ctx, indexes in by_context(writes).values():
        events = [writes[i].item[1] for i in indexes]
        now = events[0].received_at
        fresh = await new_receipts(session, [(e.event_id, "sendgrid") for e in events], now)
        index = await SendLogIndex.load(session, [e.provider_id for e in events if e.provider_id],
                                        [e.dispatch_id for e in events if e.dispatch_id], channel="email")
        outbox = OutboxBatch()
        unsubscribing: list[tuple[int, SendLogEntry]] = []
        for i, event in zip(indexes, events, strict=True):
            if (event.event_id, "sendgrid") not in fresh:
                results[i] = "duplicate"
                continue
            fresh.discard((event.event_id, "sendgrid"))
            row = index.by_dispatch.get(event.dispatch_id) if event.dispatch_id else None
            if row is None and event.provider_id:
                row = index.by_provider.get(event.provider_id)
            if row is None:
                writes[i].run(log.warning, "SendGrid event for an unknown message", sg_event=event.name,
                              x_message_id=event.provider_id)
                results[i] = "unknown_message"
                continue
            if event.name in UNSUBSCRIBE_EVENTS:
                unsubscribing.append((i, row))
            results[i] = writes[i].run(_apply_email_event, ctx, outbox, index, row, event)
        # One unsubscribe response per dispatch, however many times it was asked for.
        first = await new_receipts(session, [(row.dispatch_id, "unsubscribe") for _, row in unsubscribing], now)
        for i, row in unsubscribing:
            if (row.dispatch_id, "unsubscribe") in first:
                first.discard((row.dispatch_id, "unsubscribe"))
                writes[i].run(stage_unsubscribe, ctx, outbox, row, writes[i].item[1].received_at)
        await index.save(session)
        await outbox.insert(session)
    return results


def _apply_email_event(
    ctx: EmailWebhookContext, outbox: OutboxBatch, index: SendLogIndex, row: SendLogEntry, event: EmailEvent
) -> str:
    name, now = event.name, event.received_at
    if row.provider_id is None and event.provider_id:
        row.provider_id = event.provider_id
        index.by_provider.setdefault(event.provider_id, row)
    proven_sent(row)  # the event proves SendGrid has it
    if name in UNSUBSCRIBE_EVENTS:
        return "applied"  # staged once per dispatch by the caller
    status = SENDGRID_STATUS.get(name)
    if status is None:
        return "recorded"
    error_code = error_message = None
    if name == "bounce":
        error_code = str(event.raw.get("type") or "bounce")
        error_message = str(event.raw.get("reason") or "") or None
    elif name == "dropped":
        error_code, error_message = "dropped", str(event.raw.get("reason") or "") or None
    elif name == "spamreport":
        error_code, error_message = "spamreport", "the recipient marked the message as spam"
    topic = ctx.topics.contact_outcomes
    moved = advance(
        outbox, topic, row, status, source=ctx.source, provider=ctx.provider, now=now,
        error_code=error_code[:50] if error_code else None, error_message=error_message,
    )
    if name == "spamreport":
        # A spam complaint is an opt-out whatever the message's status was.
        stage_opt_out(outbox, topic, row, source=ctx.source, now=now)
    return "applied" if moved else "stale"


def events_routes() -> APIRouter:
    """``POST /webhooks/sendgrid/events``; reads ``app.state.webhooks``."""
    router = APIRouter()

    @router.post(EVENTS_PATH, status_code=204, tags=["webhooks"])
    async def sendgrid_events(request: Request, ctx: EmailContextDep) -> Response:
        raw = await request.body()
        signature, timestamp = request.headers.get(SIGNATURE_HEADER), request.headers.get(TIMESTAMP_HEADER)
        refusal = ctx.verifier.refusal(raw, signature, timestamp, now=ctx.clock().timestamp())
        if refusal is not None:
            ctx.count(refusal)  # forged, or replayed (validly signed, too long ago)
            log.warning("webhook refused: bad, missing or stale SendGrid signature", path=request.url.path,
                        reason=refusal)
            raise Problem(403, "Forbidden", "invalid, missing or stale event webhook signature", "/problems/signature")
        try:
            events = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise Problem(400, "Bad Request", f"the body is not JSON: {exc}") from exc
        if not isinstance(events, list):
            raise Problem(400, "Bad Request", "the body must be a JSON array of events")
        pending: list[asyncio.Future[Any]] = []
        for event in events:
            parsed = email_event(ctx, event) if isinstance(event, dict) else None
            if parsed is None:
                ctx.count("event_ignored")
                continue
            with continued(parse_traceparent(str(event.get("traceparent") or ""))):  # the send's trace
                pending.append(ctx.writer.submit(_apply_events, (ctx, parsed)))
        # Answered once every event of the request is committed: a failure is a 5xx, and SendGrid retries.
        for outcome in await asyncio.shield(asyncio.gather(*pending)):
            # An event already applied (same sg_event_id) is a replay: refused, whoever sent it again.
            ctx.count("replayed" if outcome == "duplicate" else f"event_{outcome}")
        return Response(status_code=204)

    return router
