"""Twilio webhooks of a message channel: delivery status callbacks and inbound messages.

Both verify ``X-Twilio-Signature`` over the public URL the service is configured with (refused
with 403 otherwise, before anything is read from or written to the database) and are idempotent:
a callback already applied — ``(MessageSid, MessageStatus)``, or an inbound ``MessageSid`` — changes
nothing. Status only moves forward (:func:`shared.channels.models.advances`), whatever order the
callbacks arrive in.

Both are written by the service's group writer (:class:`~shared.db.group.GroupWriter`, docs/internals.md: batches):
the callbacks of the last few milliseconds share one transaction — one insert of their receipts, one
read of their send-log rows, one insert of their outcomes — and each is answered only once that
transaction is committed (a crash before it: no 2xx, the provider retries).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from twilio.twiml.messaging_response import MessagingResponse

from services.messaging.keywords import KeywordClassifier
from shared.app import DirectRoute
from shared.channels.callbacks import ChannelWebhookContext, SendLogIndex, by_context, new_receipts
from shared.channels.models import SendLogRecord, bare_address
from shared.channels.outcomes import advance, outcome_id, response_event, stage_opt_out
from shared.db import OutboxBatch, Write, add_to_outbox
from shared.logging import get_logger
from shared.providers import delivery_reason
from shared.providers.twilio import TwilioSignature, verify_twilio_form

log = get_logger(__name__)

STATUS_PATH = "/webhooks/twilio/status"
INBOUND_PATH = "/webhooks/twilio/inbound"
#: Twilio ``MessageStatus`` → ``DeliveryUpdated.status``; anything else (``receiving``...) is recorded only.
TWILIO_STATUS: dict[str, str] = {
    "accepted": "accepted",
    "queued": "accepted",
    "scheduled": "accepted",
    "sending": "sent",
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "failed": "failed",
    "undelivered": "undelivered",
    "canceled": "failed",
}
TWIML = "application/xml"

#: Called in the inbound message's transaction with the sender's bare number (WhatsApp opens its window).
InboundHook = Callable[[AsyncSession, str, datetime], Awaitable[None]]


@dataclass(kw_only=True)
class WebhookContext(ChannelWebhookContext):
    """What the Twilio message webhooks need besides the channel's: the signature and public URL they
    are verified with, the reply keywords, and the channel's hook for inbound messages."""

    signature: TwilioSignature
    public_url: str
    classifier: KeywordClassifier
    provider: str = "twilio"
    on_inbound: InboundHook | None = None


def status_callback_url(public_url: str, dispatch_id: str) -> str:
    """The ``StatusCallback`` of a dispatch's message: it names the dispatch, so even a send whose answer
    was lost (``unknown``) is reconciled by its callbacks."""
    return f"{public_url.rstrip('/')}{STATUS_PATH}?dispatch={dispatch_id}"


def get_context(request: Request) -> WebhookContext:
    ctx: WebhookContext = request.app.state.webhooks
    return ctx


ContextDep = Annotated[WebhookContext, Depends(get_context)]


async def verified_params(request: Request, ctx: WebhookContext) -> dict[str, str]:
    return await verify_twilio_form(request, ctx.signature, ctx.public_url, ctx.count)


@dataclass(frozen=True)
class StatusReport:
    """One delivery status callback: Twilio's ``MessageSid`` and ``MessageStatus`` (lower-cased)."""

    sid: str
    status: str
    dispatch_hint: str | None
    error_code: str | None
    error_message: str | None
    received_at: datetime


async def apply_status(ctx: WebhookContext, params: dict[str, str], dispatch_hint: str | None) -> str:
    """Apply one status callback (committed when this returns); returns what happened (for logs and tests)."""
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    raw = (params.get("MessageStatus") or params.get("SmsStatus") or "").lower()
    if not sid or not raw:
        return "ignored"
    report = StatusReport(sid, raw, dispatch_hint, params.get("ErrorCode") or None,
                          params.get("ErrorMessage") or None, ctx.clock())
    outcome: str = await ctx.writer.write(_apply_statuses, (ctx, report))
    return outcome


async def _apply_statuses(
    session: AsyncSession, writes: Sequence[Write[tuple[WebhookContext, StatusReport]]]
) -> list[str]:
    """The group writer's kind for status callbacks: receipts, rows and outcomes set-based."""
    results = [""] * len(writes)
    for ctx, indexes in by_context(writes).values():
        mine = [writes[i] for i in indexes]
        reports = [w.item[1] for w in mine]
        fresh = await new_receipts(session, [(r.sid, r.status) for r in reports], reports[0].received_at)
        index = await SendLogIndex.load(session, [r.sid for r in reports],
                                        [r.dispatch_hint for r in reports if r.dispatch_hint])
        outbox = OutboxBatch()
        for i, write, report in zip(indexes, mine, reports, strict=True):
            key = (report.sid, report.status)
            if key not in fresh:
                results[i] = "duplicate"
                continue
            fresh.discard(key)  # a second copy in the same group is a duplicate too
            results[i] = write.run(_apply_one_status, ctx, outbox, index, report)
        await index.save(session)
        await outbox.insert(session)
    return results


def _apply_one_status(ctx: WebhookContext, outbox: OutboxBatch, index: SendLogIndex, report: StatusReport) -> str:
    row = index.find(report.sid, report.dispatch_hint)
    if row is None:
        log.warning("status callback for an unknown message", message_sid=report.sid, status=report.status)
        return "unknown_message"
    status = TWILIO_STATUS.get(report.status)
    if status is None:
        return "recorded"
    topic = ctx.topics.contact_outcomes
    moved = advance(
        outbox, topic, row, status, source=ctx.source, provider=ctx.provider, now=report.received_at,
        error_code=report.error_code, error_message=report.error_message,
    )
    if moved and delivery_reason(ctx.provider, report.error_code) == "opted_out":
        stage_opt_out(outbox, topic, row, source=ctx.source, now=report.received_at)
    return "applied" if moved else "stale"


@dataclass(frozen=True)
class InboundMessage:
    sid: str
    key: str
    body: str
    kind: str
    received_at: datetime


@dataclass(frozen=True)
class _Inbound:
    """What an inbound message did: the reply kind, the locale of its help text, and what to count."""

    locale: str | None
    counted: str | None


async def apply_inbound(ctx: WebhookContext, params: dict[str, str]) -> str:
    """Apply one inbound message (committed when this returns); returns the TwiML answer (help text in the
    debtor's locale, or empty)."""
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    body = params.get("Body", "")
    kind = ctx.classifier.classify(body, params.get("OptOutType"))
    message = InboundMessage(sid, bare_address(params.get("From", "")), body, kind, ctx.clock())
    done: _Inbound = await ctx.writer.write(_apply_inbound, (ctx, message))
    if done.counted:
        ctx.count(done.counted)
    answer = MessagingResponse()
    if kind == "help":
        answer.message(ctx.classifier.help_text(done.locale))
    return str(answer)


async def _apply_inbound(
    session: AsyncSession, writes: Sequence[Write[tuple[WebhookContext, InboundMessage]]]
) -> list[_Inbound]:
    """The group writer's kind for inbound messages: receipts in one statement, then each message."""
    results: list[_Inbound] = [_Inbound(None, None)] * len(writes)
    for ctx, indexes in by_context(writes).values():
        messages = [writes[i].item[1] for i in indexes]
        fresh = await new_receipts(session, [(m.sid, "inbound") for m in messages if m.sid], messages[0].received_at)
        latest: dict[str, SendLogRecord | None] = {}
        outbox = OutboxBatch()
        for i, message in zip(indexes, messages, strict=True):
            first = not message.sid or (message.sid, "inbound") in fresh
            fresh.discard((message.sid, "inbound"))
            if message.key not in latest:
                stmt = (
                    select(SendLogRecord)
                    .where(SendLogRecord.address_key == message.key, SendLogRecord.channel == ctx.channel)
                    .order_by(SendLogRecord.created_at.desc())
                    .limit(1)
                )
                latest[message.key] = (await session.execute(stmt)).scalars().first()
            row = latest[message.key]
            counted = "replayed"  # the same message again: refused, whoever sent it
            if first:
                if ctx.on_inbound is not None:
                    await writes[i].run_async(ctx.on_inbound, session, message.key, message.received_at)
                counted = writes[i].run(_stage_inbound, ctx, outbox, row, message)
            results[i] = _Inbound(row.locale if row is not None else None, counted)
        await outbox.insert(session)
    return results


def _stage_inbound(ctx: WebhookContext, outbox: OutboxBatch, row: SendLogRecord | None, message: InboundMessage) -> str:
    if row is None:
        log.warning("inbound message from an address we never sent to", kind=message.kind)
        return "inbound_unmatched"
    event = response_event(
        event_id=outcome_id("inbound", message.sid or f"{message.key}/{message.received_at.isoformat()}"),
        debtor_id=row.debtor_id, dispatch_id=row.dispatch_id, channel=ctx.channel, kind=message.kind,
        text=message.body, address=row.address, source=ctx.source, occurred_at=message.received_at,
        correlation_id=row.request_id,
    )
    add_to_outbox(outbox, ctx.topics.contact_outcomes, event)
    return f"inbound_{message.kind}"


class CallbackRoute(DirectRoute):
    """The route of a provider callback that comes twice per message (see ``DirectRoute``)."""


def twilio_webhooks() -> APIRouter:
    """``POST /webhooks/twilio/status`` and ``POST /webhooks/twilio/inbound``; reads ``app.state.webhooks``."""
    router = APIRouter(tags=["webhooks"])

    async def status_callback(request: Request, dispatch: str | None = None) -> Response:
        ctx = get_context(request)
        params = await verified_params(request, ctx)
        outcome = await apply_status(ctx, params, dispatch)
        ctx.count("replayed" if outcome == "duplicate" else f"status_{outcome}")
        return Response(status_code=204)

    router.add_api_route(STATUS_PATH, status_callback, methods=["POST"], status_code=204,
                         route_class_override=CallbackRoute)

    @router.post(INBOUND_PATH)
    async def inbound_message(request: Request, ctx: ContextDep) -> Response:
        params = await verified_params(request, ctx)
        twiml = await apply_inbound(ctx, params)
        return Response(twiml, media_type=TWIML)

    return router
