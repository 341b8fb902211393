"""Twilio webhooks of a message channel: delivery status callbacks and inbound messages.

Both verify ``X-Twilio-Signature`` over the public URL the service is configured with (refused
with 403 otherwise, before anything is read from or written to the database) and are idempotent:
a callback already applied — ``(MessageSid, MessageStatus)``, or an inbound ``MessageSid`` — changes
nothing. Status only moves forward (:func:`shared.channels.models.advances`), whatever order the
callbacks arrive in.

Both are written by the service's group writer (:class:`~shared.db.group.GroupWriter`, DESIGN §12):
the callbacks of the last few milliseconds share one transaction — one insert of their receipts, one
read of their send-log rows, one insert of their outcomes — and each is answered only once that
transaction is committed (a crash before it: no 2xx, the provider retries).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, cast

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy import Table, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from twilio.twiml.messaging_response import MessagingResponse

from services.messaging.keywords import KeywordClassifier
from shared.channels.models import ProviderReceipt, SendLogRecord, bare_address
from shared.channels.outcomes import advance, outcome_id, response_event, stage_opt_out
from shared.channels.sendlog import SEND_LOG, SendLogEntry, SendLogRows
from shared.db import Database, GroupWriter, OutboxBatch, Write, add_to_outbox
from shared.events import Topics, utcnow
from shared.events.contracts import Channel
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


@dataclass
class WebhookContext:
    channel: Channel
    db: Database
    topics: Topics
    signature: TwilioSignature
    public_url: str
    classifier: KeywordClassifier
    source: str
    writer: GroupWriter
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
    return (provider_id, status) in await new_receipts(session, [(provider_id, status)], now)


async def new_receipts(session: AsyncSession, keys: Iterable[tuple[str, str]], now: datetime) -> set[tuple[str, str]]:
    """Record many webhooks as applied in one statement; returns the ``(id, status)`` keys that were not yet."""
    unique = list(dict.fromkeys(keys))
    if not unique:
        return set()
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    table = cast(Table, ProviderReceipt.__table__)
    stmt = (
        insert(table)
        .on_conflict_do_nothing(index_elements=["provider_id", "status"])
        .returning(table.c.provider_id, table.c.status)
    )
    values = [{"provider_id": key, "status": status, "received_at": now} for key, status in unique]
    return {(key, status) for key, status in (await session.execute(stmt, values)).all()}


class SendLogIndex:
    """Send-log rows loaded (and locked) for a group of callbacks, found as :func:`find_send_log` would;
    :meth:`save` writes back what the callbacks changed, in one statement."""

    def __init__(self, rows: SendLogRows) -> None:
        self.rows = rows
        self.by_dispatch: dict[str, SendLogEntry] = {}
        self.by_provider: dict[str, SendLogEntry] = {}
        for row in rows:
            self.by_dispatch[row.dispatch_id] = row
            self._index(row)

    @classmethod
    async def load(
        cls, session: AsyncSession, provider_ids: Iterable[str], dispatch_ids: Iterable[str], channel: str | None = None
    ) -> SendLogIndex:
        """One query for every row named by a dispatch id or a provider id (locked in dispatch id order)."""
        providers, dispatches = sorted(set(provider_ids)), sorted(set(dispatch_ids))
        if not providers and not dispatches:
            return cls(SendLogRows([]))
        conditions = []
        if dispatches:
            conditions.append(SEND_LOG.c.dispatch_id.in_(dispatches))
        if providers:
            conditions.append(SEND_LOG.c.provider_id.in_(providers))
        where = [or_(*conditions)]
        if channel is not None:
            where.append(SEND_LOG.c.channel == channel)
        return cls(await SendLogRows.select(session, *where))

    async def save(self, session: AsyncSession) -> int:
        return await self.rows.save(session)

    def _index(self, row: SendLogEntry) -> None:
        if row.provider_id is None:
            return
        current = self.by_provider.get(row.provider_id)
        if current is None or row.created_at > current.created_at:  # the latest message with that id
            self.by_provider[row.provider_id] = row

    def find(self, provider_id: str, dispatch_hint: str | None) -> SendLogEntry | None:
        """As :func:`find_send_log`: by the dispatch id, else by the provider id; adopts the provider id."""
        row = self.by_dispatch.get(dispatch_hint) if dispatch_hint else None
        if row is not None and row.provider_id not in (None, provider_id):
            row = None
        if row is None:
            row = self.by_provider.get(provider_id)
        if row is not None:
            if row.provider_id is None:
                row.provider_id = provider_id
                self._index(row)
            if row.state in ("sending", "unknown"):
                row.state = "sent"
        return row


@dataclass(frozen=True)
class StatusReport:
    """One delivery status callback: Twilio's ``MessageSid`` and ``MessageStatus`` (lower-cased)."""

    sid: str
    status: str
    dispatch_hint: str | None
    error_code: str | None
    error_message: str | None
    received_at: datetime


def by_context(writes: Sequence[Write[tuple[Any, Any]]]) -> dict[int, tuple[Any, list[int]]]:
    """Writes whose item is ``(context, ...)``, grouped by their context object (a writer may serve two)."""
    groups: dict[int, tuple[Any, list[int]]] = {}
    for index, write in enumerate(writes):
        ctx = write.item[0]
        groups.setdefault(id(ctx), (ctx, []))[1].append(index)
    return groups


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


async def _locked(session: AsyncSession, condition: object) -> SendLogRecord | None:
    stmt = select(SendLogRecord).where(condition).order_by(SendLogRecord.created_at.desc()).limit(1)  # type: ignore[arg-type]
    return (await session.execute(stmt.with_for_update())).scalars().first()


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
