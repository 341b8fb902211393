"""The voice service's Twilio webhooks: the call's TwiML, the IVR keypress, and call status callbacks.

Every one verifies ``X-Twilio-Signature`` over the configured public URL (403 problem+json otherwise,
before the database is touched). Effects are idempotent: a status callback already applied
``(CallSid, CallStatus)`` or a keypress already recorded changes nothing, and a call's status only moves
forward (``sent`` → ``conversation`` | ``voicemail`` | ``no_answer`` | ``busy`` | ``failed``). Their
writes go through the service's group writer (docs/internals.md: batches): each shares a transaction with whatever
else arrived in the same few milliseconds and is answered once that transaction is committed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.voice import twiml
from services.voice.calls import CALL_STATUS_PATH, GATHER_PATH, TWIML_PATH
from services.voice.models import CallSession
from services.voice.settings import Settings
from shared.channels.callbacks import ChannelWebhookContext, find_send_log, first_receipt
from shared.channels.outcomes import advance, outcome_id
from shared.db import add_to_outbox
from shared.events.contracts import Channel, ResponseReceived, ResponseReceivedEvent
from shared.logging import get_logger
from shared.providers.twilio import TwilioSignature, verify_twilio_form
from shared.tracing import callback_url as traced_url

log = get_logger(__name__)

TWIML = "application/xml"


@dataclass(kw_only=True)
class VoiceContext(ChannelWebhookContext):
    """The voice webhooks' context: the service's settings (scripts, IVR, public URL), the Twilio
    signature, and the pacer."""

    settings: Settings
    signature: TwilioSignature
    channel: Channel = "voice"
    provider: str = "twilio"
    #: Progressive dialing state (``services.voice.pacing.Pacer``), shared with the Calls adapter.
    pacer: Any = None


def request_pacer(ctx: VoiceContext) -> Any:
    """The voice app's pacer (``app.state.pacer``), reached through the context."""
    return ctx.pacer


def get_context(request: Request) -> VoiceContext:
    ctx: VoiceContext = request.app.state.voice
    return ctx


ContextDep = Annotated[VoiceContext, Depends(get_context)]


async def verified_params(request: Request, ctx: VoiceContext) -> dict[str, str]:
    return await verify_twilio_form(request, ctx.signature, ctx.settings.public_url, ctx.count)


async def _session(db_session: AsyncSession, dispatch_id: str) -> CallSession | None:
    stmt = select(CallSession).where(CallSession.dispatch_id == dispatch_id).with_for_update()
    return (await db_session.execute(stmt)).scalar_one_or_none()


async def answer_call(ctx: VoiceContext, dispatch_id: str, params: dict[str, str]) -> str:
    """The TwiML for an answered call: the voicemail to a machine, the live script and IVR to a person."""
    # No AnsweredBy (AMD off): whoever answered is treated as a person.
    answered_by = params.get("AnsweredBy") or None
    now = ctx.clock()

    async def answered(db_session: AsyncSession) -> tuple[str, str | None, str, str | None, str] | None:
        call = await _session(db_session, dispatch_id)
        if call is None:
            return None
        call.call_sid = call.call_sid or params.get("CallSid") or None
        call.answered_by = call.answered_by or answered_by or "human"
        call.updated_at = now
        return call.answered_by, call.voicemail_script, call.voice_script, call.ivr_prompt, call.locale

    found = await ctx.writer.run(answered)
    if found is None:
        log.warning("TwiML requested for an unknown dispatch", dispatch_id=dispatch_id)
        return twiml.hangup()
    played_to, voicemail_script, voice_script, prompt, locale = found
    if played_to == "fax":
        return twiml.hangup()
    if twiml.is_machine(played_to):
        ctx.count("voicemail")
        return twiml.voicemail(voicemail_script, locale)
    ctx.count("live")
    action = traced_url(ctx.settings.public_url.rstrip("/") + GATHER_PATH.format(dispatch_id=dispatch_id))
    from services.voice import agents  # (agents builds on this module)

    timeout_s = ctx.settings.ivr.timeout_s
    to_agent = await agents.live_twiml(ctx, dispatch_id, voice_script, prompt, locale, action, timeout_s)
    if to_agent is not None:
        return to_agent
    return twiml.live(voice_script, prompt, locale, action, ctx.settings.ivr.timeout_s)


async def record_keypress(ctx: VoiceContext, dispatch_id: str, params: dict[str, str]) -> str:
    """A key pressed at the IVR → ``response_received`` (outbox); answers a localized thank-you and hangs up."""
    digits = (params.get("Digits") or "").strip()
    call_sid = params.get("CallSid") or dispatch_id
    now = ctx.clock()

    async def keypress(db_session: AsyncSession) -> tuple[str, str | None]:
        """The TwiML answer, and what to count once committed."""
        call = await _session(db_session, dispatch_id)
        if call is None:
            log.warning("keypress for an unknown dispatch", dispatch_id=dispatch_id)
            return twiml.hangup(), None
        locale = call.locale
        if not digits:
            return twiml.goodbye("no_input", locale), None
        from services.voice import agents

        if digits == "2" and await agents.is_agent_call(db_session, dispatch_id):
            return agents.bridge_redirect(ctx, dispatch_id), None  # 2 = an agent now (or the hold, the callback offer)
        await agents.script_heard(db_session, dispatch_id)
        kind = twiml.response_kind(digits, ctx.settings.ivr.digits)
        counted = None
        if await first_receipt(db_session, call_sid, f"digits:{digits}", now):
            call.digits, call.updated_at = digits, now
            event = ResponseReceivedEvent(
                id=outcome_id("keypress", call_sid, digits),
                source=ctx.source,
                subject=call.debtor_id,
                correlationid=call.request_id,
                data=ResponseReceived(
                    debtor_id=call.debtor_id, dispatch_id=call.dispatch_id, channel="voice", kind=kind,
                    digits=digits, address=call.address, occurred_at=now,
                ),
            )
            add_to_outbox(db_session, ctx.topics.contact_outcomes, event)
            counted = f"keypress_{kind}"
        else:
            counted = "replayed"
        return twiml.goodbye(kind, locale), counted

    answer, counted = await ctx.writer.run(keypress)
    if counted:
        ctx.count(counted)
    return str(answer)


async def apply_call_status(ctx: VoiceContext, params: dict[str, str], dispatch_hint: str | None) -> str:
    """Apply one call status callback; returns what happened (for logs, metrics and tests)."""
    sid = params.get("CallSid") or ""
    raw = (params.get("CallStatus") or "").lower()
    if not sid or not raw:
        return "ignored"
    now = ctx.clock()

    async def call_status(db_session: AsyncSession) -> str:
        return await _apply_call_status(ctx, db_session, params, dispatch_hint, sid, raw, now)

    outcome: str = await ctx.writer.run(call_status)
    return outcome


async def _apply_call_status(
    ctx: VoiceContext, db_session: AsyncSession, params: dict[str, str], dispatch_hint: str | None, sid: str,
    raw: str, now: datetime,
) -> str:
    """One call status callback in the writer's transaction."""
    if not await first_receipt(db_session, sid, f"call:{raw}", now):
        return "duplicate"
    row = await find_send_log(db_session, sid, dispatch_hint)
    if row is None:
        log.warning("status callback for an unknown call", call_sid=sid, status=raw)
        return "unknown_call"
    call = await _session(db_session, row.dispatch_id)
    answered_by = params.get("AnsweredBy") or None
    if call is not None:
        call.call_sid = call.call_sid or sid
        answered_by = call.answered_by or answered_by
    status = twiml.call_outcome(raw, answered_by)
    if status is None:
        return "recorded"
    if call is not None and status != "sent":
        call.outcome, call.updated_at = status, now
    if status != "sent":
        from services.voice import agents

        await agents.call_ended(ctx, request_pacer(ctx), db_session, row.dispatch_id, status, now)
    moved = advance(
        db_session, ctx.topics.contact_outcomes, row, status, source=ctx.source, provider=ctx.provider, now=now,
        error_code=params.get("ErrorCode") or None, error_message=params.get("ErrorMessage") or None,
    )
    return "applied" if moved else "stale"


def voice_webhooks() -> APIRouter:
    """``POST /voice/twiml/{id}``, ``POST /voice/gather/{id}``, ``POST /webhooks/twilio/call-status``."""
    router = APIRouter(tags=["webhooks"])

    @router.post(TWIML_PATH)
    async def call_twiml(dispatch_id: str, request: Request, ctx: ContextDep) -> Response:
        params = await verified_params(request, ctx)
        return Response(await answer_call(ctx, dispatch_id, params), media_type=TWIML)

    @router.post(GATHER_PATH)
    async def call_gather(dispatch_id: str, request: Request, ctx: ContextDep) -> Response:
        params = await verified_params(request, ctx)
        return Response(await record_keypress(ctx, dispatch_id, params), media_type=TWIML)

    @router.post(CALL_STATUS_PATH, status_code=204)
    async def call_status(request: Request, ctx: ContextDep, dispatch: str | None = None) -> Response:
        params = await verified_params(request, ctx)
        outcome = await apply_call_status(ctx, params, dispatch)
        ctx.count("replayed" if outcome == "duplicate" else f"status_{outcome}")
        return Response(status_code=204)

    return router
