"""Email on SendGrid: composing the v3 mail, the signed event webhook and one-click unsubscribe.

The dispatch consumer, send log and retry policy are the shared ones
(:class:`~shared.channels.dispatch.DispatchHandler`); this module adds what is email's own:

* :class:`SendGridEmailAdapter` — the rendered subject, text and HTML as a v3 mail body with
  ``custom_args`` naming the dispatch and RFC 8058 ``List-Unsubscribe`` headers;
* :func:`apply_event` — SendGrid events (correlated by the ``dispatch_id`` custom arg, deduplicated
  by ``sg_event_id``) as delivery updates and responses, committed in groups by the service's writer;
* :class:`UnsubscribeTokens` / :func:`apply_unsubscribe` — the one-click unsubscribe link;
* :func:`email_routes` — ``POST /webhooks/sendgrid/events`` and ``GET``/``POST /unsubscribe/{token}``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field, SecretStr
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.messaging.webhooks import SendLogIndex, by_context, first_receipt, new_receipts
from shared.channels.dispatch import OutboundMessage, Unsendable
from shared.channels.models import SendLogRecord, SendLogView
from shared.channels.outcomes import advance, outcome_id, response_event, stage_opt_out
from shared.channels.sendlog import SendLogEntry
from shared.db import Database, GroupWriter, Outbox, OutboxBatch, Write, add_to_outbox
from shared.events import Topics, utcnow
from shared.events.contracts import Channel, ContactDispatched
from shared.http import Problem
from shared.logging import get_logger
from shared.providers.base import Accepted
from shared.providers.sendgrid import SIGNATURE_HEADER, TIMESTAMP_HEADER, EventWebhookVerifier, SendGridMail
from shared.templates import RenderedMessage
from shared.tracing import continued, current, parse_traceparent

log = get_logger(__name__)


def traceparent_arg() -> dict[str, str]:
    """The send's trace in SendGrid's ``custom_args``: its event webhook echoes it on every event."""
    context = current()
    return {"traceparent": context.traceparent} if context is not None else {}

EVENTS_PATH = "/webhooks/sendgrid/events"
UNSUBSCRIBE_PATH = "/unsubscribe/{token}"
DEV_UNSUBSCRIBE_SECRET = "dev-unsubscribe-secret"

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


# -- settings sections ---------------------------------------------------------------------------------


class EmailSenderSettings(BaseModel):
    """Who sends, and how fast: SendGrid limits mail send requests per second per API key."""

    from_email: str = "cobranza@cadencia.example"
    from_name: str = "Cadencia"
    reply_to: str = ""
    reply_to_name: str = ""
    #: Mail send requests per second, and how many may leave back to back after a pause.
    rate: float = Field(default=10.0, gt=0)
    burst: int = Field(default=1, ge=1)


class UnsubscribeSettings(BaseModel):
    """The one-click unsubscribe link (RFC 8058) every email carries."""

    #: HMAC key of the link's token; the development default is refused in production.
    secret: SecretStr = SecretStr(DEV_UNSUBSCRIBE_SECRET)
    #: An address that unsubscribes by mail (``List-Unsubscribe: <mailto:...>``); empty: none.
    mailto: str = ""


# -- unsubscribe tokens --------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class UnsubscribeTokens:
    """``<dispatch id>.<HMAC-SHA256>`` (both base64url): the link names the dispatch and cannot be forged."""

    def __init__(self, secret: str) -> None:
        self._key = secret.encode()

    def _mac(self, dispatch_id: bytes) -> bytes:
        return hmac.new(self._key, b"unsubscribe:" + dispatch_id, hashlib.sha256).digest()[:18]

    def sign(self, dispatch_id: str) -> str:
        raw = dispatch_id.encode()
        return f"{_b64(raw)}.{_b64(self._mac(raw))}"

    def verify(self, token: str) -> str | None:
        """The dispatch id of a genuine token; ``None`` otherwise."""
        encoded, _, mac = token.partition(".")
        try:
            raw, given = _unb64(encoded), _unb64(mac)
            dispatch_id = raw.decode()
        except (binascii.Error, ValueError):
            return None
        if not raw or not hmac.compare_digest(given, self._mac(raw)):
            return None
        return dispatch_id


def unsubscribe_url(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}/unsubscribe/{token}"


# -- composing and sending -----------------------------------------------------------------------------


class SendGridEmailAdapter:
    """The email channel's :class:`~shared.channels.dispatch.ChannelAdapter` on SendGrid v3 mail send."""

    channel: Channel = "email"
    provider = "sendgrid"
    lead_time_s = 0.0

    def __init__(
        self,
        client: SendGridMail,
        sender: EmailSenderSettings,
        unsubscribe: UnsubscribeSettings,
        tokens: UnsubscribeTokens,
        public_url: str,
    ) -> None:
        self.client, self.sender, self.unsubscribe, self.tokens = client, sender, unsubscribe, tokens
        self.public_url = public_url

    def list_unsubscribe(self, dispatch_id: str) -> dict[str, str]:
        token = self.tokens.sign(dispatch_id)
        targets = [f"<{unsubscribe_url(self.public_url, token)}>"]
        if self.unsubscribe.mailto:
            targets.append(f"<mailto:{self.unsubscribe.mailto}?subject=unsubscribe%20{token}>")
        return {"List-Unsubscribe": ", ".join(targets), "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}

    async def compose(
        self, dispatch: ContactDispatched, rendered: RenderedMessage, status_callback: str
    ) -> OutboundMessage:
        if not rendered.subject:
            raise Unsendable("template_error", f"template {rendered.key} v{rendered.version} has no subject")
        # SendGrid requires text/plain before text/html when both are present.
        content = [
            {"type": kind, "value": value}
            for kind, value in (("text/plain", rendered.text), ("text/html", rendered.html))
            if value
        ]
        if not content:
            raise Unsendable("template_error", f"template {rendered.key} v{rendered.version} has no text or html")
        sender: dict[str, str] = {"email": self.sender.from_email}
        if self.sender.from_name:
            sender["name"] = self.sender.from_name
        mail: dict[str, Any] = {
            "personalizations": [{"to": [{"email": dispatch.to}]}],
            "from": sender,
            "subject": rendered.subject,
            "content": content,
            "custom_args": {
                "dispatch_id": dispatch.dispatch_id,
                "request_id": dispatch.request_id,
                "debtor_id": dispatch.debtor_id,
                **traceparent_arg(),
            },
            "headers": self.list_unsubscribe(dispatch.dispatch_id),
        }
        if self.sender.reply_to:
            reply_to = {"email": self.sender.reply_to}
            if self.sender.reply_to_name:
                reply_to["name"] = self.sender.reply_to_name
            mail["reply_to"] = reply_to
        return OutboundMessage(to=dispatch.to, sender=self.sender.from_email, payload=mail)

    async def send(self, message: OutboundMessage) -> Accepted:
        return await self.client.send(message.payload)


# -- webhooks ------------------------------------------------------------------------------------------


@dataclass
class EmailWebhookContext:
    db: Database
    topics: Topics
    verifier: EventWebhookVerifier
    tokens: UnsubscribeTokens
    source: str
    #: The service's group writer: every event and unsubscribe is committed through it (DESIGN §12).
    writer: GroupWriter
    provider: str = "sendgrid"
    clock: Callable[[], datetime] = utcnow
    counts: dict[str, int] = field(default_factory=dict)

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1


def get_email_context(request: Request) -> EmailWebhookContext:
    ctx: EmailWebhookContext = request.app.state.webhooks
    return ctx


EmailContextDep = Annotated[EmailWebhookContext, Depends(get_email_context)]


def x_message_id(sg_message_id: str) -> str:
    """``<X-Message-Id>.filterdrecv-…`` → the ``X-Message-Id`` the send answered with."""
    return sg_message_id.split(".", 1)[0]


async def _row(session: AsyncSession, dispatch_id: str | None, provider_id: str | None) -> SendLogRecord | None:
    for condition in (
        SendLogRecord.dispatch_id == dispatch_id if dispatch_id else None,
        SendLogRecord.provider_id == provider_id if provider_id else None,
    ):
        if condition is None:
            continue
        stmt = select(SendLogRecord).where(condition, SendLogRecord.channel == "email").limit(1)
        row = (await session.execute(stmt.with_for_update())).scalars().first()
        if row is not None:
            return row
    return None


def _stage_unsubscribe(ctx: EmailWebhookContext, outbox: Outbox, row: SendLogView, now: datetime) -> None:
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
                writes[i].run(_stage_unsubscribe, ctx, outbox, row, writes[i].item[1].received_at)
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
    if row.state in ("sending", "unknown"):
        row.state = "sent"  # the event proves SendGrid has it
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


async def apply_unsubscribe(ctx: EmailWebhookContext, dispatch_id: str) -> bool:
    """The recipient of ``dispatch_id`` unsubscribed by the link (committed when this returns); False if
    the dispatch is unknown."""
    now = ctx.clock()

    async def unsubscribe(session: AsyncSession) -> str:
        row = await _row(session, dispatch_id, None)
        if row is None:
            return "unknown"
        if await first_receipt(session, row.dispatch_id, "unsubscribe", now):
            _stage_unsubscribe(ctx, session, row, now)
            return "unsubscribe"
        return "again"

    outcome = await ctx.writer.run(unsubscribe)
    if outcome == "unsubscribe":
        ctx.count("unsubscribe")
    return bool(outcome != "unknown")


async def dispatch_known(ctx: EmailWebhookContext, dispatch_id: str) -> bool:
    async with ctx.db.sessions() as session:
        stmt = select(SendLogRecord.dispatch_id).where(
            SendLogRecord.dispatch_id == dispatch_id, SendLogRecord.channel == "email"
        )
        return (await session.execute(stmt)).first() is not None


_PAGE = """<!doctype html>
<html lang="es"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<meta name="robots" content="noindex"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;color:#222}}
button{{font-size:1rem;padding:.6rem 1.2rem}}</style></head><body>
{content}
</body></html>
"""


def _confirm_page(action: str) -> str:
    content = f"""<h1>¿Dejar de recibir estos correos?</h1>
<p>Pulsa el botón para darte de baja de los correos sobre esta cuenta.</p>
<h1 lang="en">Stop receiving these emails?</h1>
<p lang="en">Press the button to unsubscribe from emails about this account.</p>
<form method="post" action="{html.escape(action, quote=True)}">
<input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">Darme de baja / Unsubscribe</button>
</form>"""
    return _PAGE.format(title="Darse de baja / Unsubscribe", content=content)


def _done_page() -> str:
    content = """<h1>Listo: te diste de baja.</h1>
<p>No te enviaremos más correos sobre esta cuenta.</p>
<h1 lang="en">Done: you are unsubscribed.</h1>
<p lang="en">We will not send you more emails about this account.</p>"""
    return _PAGE.format(title="Baja confirmada / Unsubscribed", content=content)


def _not_found() -> Problem:
    return Problem(404, "Not Found", "unknown or invalid unsubscribe link", "/problems/unsubscribe-link")


def email_routes() -> APIRouter:
    """The SendGrid event webhook and the unsubscribe link; they read ``app.state.webhooks``."""
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

    @router.get(UNSUBSCRIBE_PATH, response_class=HTMLResponse, tags=["unsubscribe"])
    async def unsubscribe_page(token: str, ctx: EmailContextDep) -> HTMLResponse:
        # Mail scanners follow links: a GET only shows the button, it never unsubscribes.
        dispatch_id = ctx.tokens.verify(token)
        if dispatch_id is None or not await dispatch_known(ctx, dispatch_id):
            raise _not_found()
        return HTMLResponse(_confirm_page(f"/unsubscribe/{token}"))

    @router.post(UNSUBSCRIBE_PATH, response_class=HTMLResponse, tags=["unsubscribe"])
    async def unsubscribe_one_click(token: str, ctx: EmailContextDep) -> HTMLResponse:
        dispatch_id = ctx.tokens.verify(token)
        if dispatch_id is None or not await apply_unsubscribe(ctx, dispatch_id):
            raise _not_found()
        return HTMLResponse(_done_page())

    return router
