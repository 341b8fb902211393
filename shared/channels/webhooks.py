"""Twilio webhooks of a message channel: delivery status callbacks and inbound messages.

Both verify ``X-Twilio-Signature`` over the public URL the service is configured with (refused
with 403 otherwise, before anything is read from or written to the database) and are idempotent:
a callback already applied — ``(MessageSid, MessageStatus)``, or an inbound ``MessageSid`` — changes
nothing. Status only moves forward (:func:`shared.channels.models.advances`), whatever order the
callbacks arrive in.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from twilio.twiml.messaging_response import MessagingResponse

from shared.channels.keywords import KeywordClassifier
from shared.channels.models import ProviderReceipt, SendLogRecord, bare_address
from shared.channels.outcomes import advance, outcome_id, response_event, stage_opt_out
from shared.db import Database, add_to_outbox
from shared.events import Topics, utcnow
from shared.events.contracts import Channel
from shared.http import Problem
from shared.logging import get_logger
from shared.providers.twilio import OPTED_OUT, SIGNATURE_HEADER, TwilioSignature

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


@dataclass
class WebhookContext:
    channel: Channel
    db: Database
    topics: Topics
    signature: TwilioSignature
    public_url: str
    classifier: KeywordClassifier
    source: str
    provider: str = "twilio"
    on_inbound: InboundHook | None = None
    clock: Callable[[], datetime] = utcnow
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1


def status_callback_url(public_url: str, dispatch_id: str) -> str:
    """The ``StatusCallback`` of a dispatch's message: it names the dispatch, so even a send whose answer
    was lost (``unknown``) is reconciled by its callbacks."""
    return f"{public_url.rstrip('/')}{STATUS_PATH}?dispatch={dispatch_id}"


def get_context(request: Request) -> WebhookContext:
    ctx: WebhookContext = request.app.state.webhooks
    return ctx


ContextDep = Annotated[WebhookContext, Depends(get_context)]


async def verify_twilio_form(
    request: Request, signature: TwilioSignature, public_url: str, count: Callable[[str], None]
) -> dict[str, str]:
    """The form parameters of a request Twilio signed for ``public_url``; 403 problem otherwise.

    Every Twilio webhook of every channel (messages, calls, TwiML fetches) goes through here.
    """
    raw = await request.body()
    pairs = parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
    multi: dict[str, list[str]] = {}
    for key, value in pairs:
        multi.setdefault(key, []).append(value)
    url = public_url.rstrip("/") + request.url.path
    if request.url.query:
        url += "?" + request.url.query
    if not signature.verify(url, multi, request.headers.get(SIGNATURE_HEADER)):
        count("forged")
        log.warning("webhook refused: bad or missing Twilio signature", path=request.url.path)
        raise Problem(403, "Forbidden", "invalid or missing X-Twilio-Signature", "/problems/signature")
    return {key: values[0] for key, values in multi.items()}


async def verified_params(request: Request, ctx: WebhookContext) -> dict[str, str]:
    return await verify_twilio_form(request, ctx.signature, ctx.public_url, ctx.count)


async def find_send_log(session: AsyncSession, provider_id: str, dispatch_hint: str | None) -> SendLogRecord | None:
    """The send-log row a provider callback is about, locked: by the dispatch id in the callback URL
    (set even when the send's answer was lost), else by the provider's id. The first callback for a
    row that never recorded its answer adopts the provider id and proves the provider has it."""
    row = None
    if dispatch_hint:
        row = await _locked(session, SendLogRecord.dispatch_id == dispatch_hint)
        if row is not None and row.provider_id not in (None, provider_id):
            row = None
    if row is None:
        row = await _locked(session, SendLogRecord.provider_id == provider_id)
    if row is not None:
        if row.provider_id is None:
            row.provider_id = provider_id
        if row.state in ("sending", "unknown"):
            row.state = "sent"
    return row


async def first_receipt(session: AsyncSession, provider_id: str, status: str, now: datetime) -> bool:
    """Record a webhook as applied; False if it already was."""
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = (
        insert(ProviderReceipt)
        .values(provider_id=provider_id, status=status, received_at=now)
        .on_conflict_do_nothing(index_elements=["provider_id", "status"])
    )
    result = await session.execute(stmt)
    return bool(getattr(result, "rowcount", 0) == 1)


async def apply_status(ctx: WebhookContext, params: dict[str, str], dispatch_hint: str | None) -> str:
    """Apply one status callback; returns what happened (for logs and tests)."""
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    raw = (params.get("MessageStatus") or params.get("SmsStatus") or "").lower()
    error_code = params.get("ErrorCode") or None
    if not sid or not raw:
        return "ignored"
    now = ctx.clock()
    topic = ctx.topics.contact_outcomes
    async with ctx.db.transaction() as session:
        if not await first_receipt(session, sid, raw, now):
            return "duplicate"
        row = await find_send_log(session, sid, dispatch_hint)
        if row is None:
            log.warning("status callback for an unknown message", message_sid=sid, status=raw)
            return "unknown_message"
        status = TWILIO_STATUS.get(raw)
        if status is None:
            return "recorded"
        moved = advance(
            session, topic, row, status, source=ctx.source, provider=ctx.provider, now=now,
            error_code=error_code, error_message=params.get("ErrorMessage") or None,
        )
        if moved and error_code == OPTED_OUT:
            stage_opt_out(session, topic, row, source=ctx.source, now=now)
        return "applied" if moved else "stale"


async def _locked(session: AsyncSession, condition: object) -> SendLogRecord | None:
    stmt = select(SendLogRecord).where(condition).order_by(SendLogRecord.created_at.desc()).limit(1)  # type: ignore[arg-type]
    return (await session.execute(stmt.with_for_update())).scalars().first()


async def apply_inbound(ctx: WebhookContext, params: dict[str, str]) -> str:
    """Apply one inbound message; returns the TwiML answer (help text in the debtor's locale, or empty)."""
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    sender = params.get("From", "")
    body = params.get("Body", "")
    kind = ctx.classifier.classify(body, params.get("OptOutType"))
    key = bare_address(sender)
    now = ctx.clock()
    async with ctx.db.transaction() as session:
        fresh = not sid or await first_receipt(session, sid, "inbound", now)
        stmt = (
            select(SendLogRecord)
            .where(SendLogRecord.address_key == key, SendLogRecord.channel == ctx.channel)
            .order_by(SendLogRecord.created_at.desc())
            .limit(1)
        )
        row = (await session.execute(stmt)).scalars().first()
        if fresh:
            if ctx.on_inbound is not None:
                await ctx.on_inbound(session, key, now)
            if row is not None:
                event = response_event(
                    event_id=outcome_id("inbound", sid or f"{key}/{now.isoformat()}"), debtor_id=row.debtor_id,
                    dispatch_id=row.dispatch_id, channel=ctx.channel, kind=kind, text=body, address=row.address,
                    source=ctx.source, occurred_at=now, correlation_id=row.request_id,
                )
                add_to_outbox(session, ctx.topics.contact_outcomes, event)
                ctx.count(f"inbound_{kind}")
            else:
                ctx.count("inbound_unmatched")
                log.warning("inbound message from an address we never sent to", kind=kind)
        else:
            ctx.count("replayed")
        locale = row.locale if row is not None else None
    answer = MessagingResponse()
    if kind == "help":
        answer.message(ctx.classifier.help_text(locale))
    return str(answer)


def twilio_webhooks() -> APIRouter:
    """``POST /webhooks/twilio/status`` and ``POST /webhooks/twilio/inbound``; reads ``app.state.webhooks``."""
    router = APIRouter(tags=["webhooks"])

    @router.post(STATUS_PATH, status_code=204)
    async def status_callback(request: Request, ctx: ContextDep, dispatch: str | None = None) -> Response:
        params = await verified_params(request, ctx)
        outcome = await apply_status(ctx, params, dispatch)
        ctx.count("replayed" if outcome == "duplicate" else f"status_{outcome}")
        return Response(status_code=204)

    @router.post(INBOUND_PATH)
    async def inbound_message(request: Request, ctx: ContextDep) -> Response:
        params = await verified_params(request, ctx)
        twiml = await apply_inbound(ctx, params)
        return Response(twiml, media_type=TWIML)

    return router
