"""Calls bridged to agents (progressive dialing): the bridge after the opening script, the whisper, the
callback offer when no agent is free, and the outcomes ``agent_connected`` (with talk time) and
``abandoned``.

A person on a queue call hears the opening script and the IVR inside ``<Gather>``; when it ends (or on
key 2) Twilio fetches ``/voice/bridge/{id}`` — reaching it proves the script played. With a free agent
the answer is ``<Dial timeout=wait_s action=/voice/dialed/{id}>`` to the queue's number or SIP address,
whose agent first hears ``/voice/whisper/{id}`` (the account); with none, or when the agent does not
answer in time, the debtor hears the callback offer and a ``callback_request`` response is published.
A person who hangs up before the bridge (the script unfinished) is an ``abandoned`` call.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import Boolean, DateTime, Integer, String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column
from twilio.twiml.voice_response import Dial, VoiceResponse

from services.voice import twiml
from services.voice.models import CallSession
from services.voice.pacing import Pacer
from services.voice.webhooks import ContextDep, verified_params
from shared.channels.outcomes import outcome_id
from shared.db import Base, add_to_outbox
from shared.events.contracts import (
    ContactDispatched,
    DeliveryUpdated,
    DeliveryUpdatedEvent,
    ResponseReceived,
    ResponseReceivedEvent,
)
from shared.events.envelope import utcnow
from shared.http import require_role
from shared.logging import get_logger

log = get_logger(__name__)

BRIDGE_PATH = "/voice/bridge/{dispatch_id}"
WHISPER_PATH = "/voice/whisper/{dispatch_id}"
DIALED_PATH = "/voice/dialed/{dispatch_id}"
TWIML = "application/xml"
OFFER = {
    "es": "En este momento no hay asesores disponibles. Registramos su solicitud y un asesor le devolverá la llamada.",
    "en": "No agent is available right now. We have recorded your request and an agent will call you back.",
}
WHISPER = {"es": "Cliente en línea. Cuenta {account}.", "en": "Customer on the line. Account {account}."}
GOODBYE = {"es": "Gracias por su llamada.", "en": "Thank you for your call."}


class AgentCall(Base):
    __tablename__ = "queue_calls"

    dispatch_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    queue: Mapped[str] = mapped_column(String(100))
    dial: Mapped[str] = mapped_column(String(320))
    wait_s: Mapped[int] = mapped_column(Integer)
    account_id: Mapped[str] = mapped_column(String(200))
    script_played: Mapped[bool] = mapped_column(Boolean, default=False)
    bridged: Mapped[bool] = mapped_column(Boolean, default=False)
    outcome: Mapped[str | None] = mapped_column(String(40), nullable=True)
    talk_time_s: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def _lang(locale: str) -> str:
    return "en" if locale.lower().startswith("en") else "es"


def _url(ctx: object, path: str, dispatch_id: str) -> str:
    settings = ctx.settings  # type: ignore[attr-defined]
    return str(settings.public_url).rstrip("/") + path.format(dispatch_id=dispatch_id)


async def remember(session: AsyncSession, dispatch: ContactDispatched) -> None:
    """Stored with the call session, before the call is placed."""
    queue = dispatch.agent_queue
    if queue is None or await session.get(AgentCall, dispatch.dispatch_id) is not None:
        return
    session.add(AgentCall(dispatch_id=dispatch.dispatch_id, queue=queue.name, dial=queue.dial, wait_s=queue.wait_s,
                          account_id=dispatch.account_id, created_at=utcnow()))


async def live_twiml(ctx: object, dispatch_id: str, voice_script: str, prompt: str | None, locale: str,
                     action: str, timeout_s: int) -> str | None:
    """The live TwiML of a queue call (script and IVR, then the bridge); ``None`` for an ordinary call."""
    async with ctx.db.sessions() as session:  # type: ignore[attr-defined]
        call = await session.get(AgentCall, dispatch_id)
    if call is None:
        return None
    language = twiml.say_language(locale)
    answer = VoiceResponse()
    gather = answer.gather(num_digits=1, action=action, method="POST", timeout=timeout_s, language=language)
    gather.say(voice_script, language=language)
    if prompt:
        gather.say(prompt, language=language)
    answer.redirect(_url(ctx, BRIDGE_PATH, dispatch_id), method="POST")
    return str(answer)


async def is_agent_call(session: AsyncSession, dispatch_id: str) -> bool:
    """In the caller's transaction (a second connection there could wait on the first: SQLite has one writer)."""
    return await session.get(AgentCall, dispatch_id) is not None


def bridge_redirect(ctx: object, dispatch_id: str) -> str:
    answer = VoiceResponse()
    answer.redirect(_url(ctx, BRIDGE_PATH, dispatch_id), method="POST")
    return str(answer)


def _delivery(ctx: object, call: CallSession, status: str, now: datetime, call_sid: str | None,
              talk_time_s: int | None = None) -> DeliveryUpdatedEvent:
    return DeliveryUpdatedEvent(
        id=outcome_id("delivery", call.dispatch_id, status), source=ctx.source,  # type: ignore[attr-defined]
        subject=call.debtor_id, correlationid=call.request_id,
        data=DeliveryUpdated(dispatch_id=call.dispatch_id, request_id=call.request_id, debtor_id=call.debtor_id,
                             channel="voice", status=status, provider="twilio",  # type: ignore[arg-type]
                             provider_id=call_sid, occurred_at=now, talk_time_s=talk_time_s),
    )


def _offer_callback(ctx: object, session: AsyncSession, call: CallSession, agent: AgentCall, now: datetime) -> str:
    """No agent: the debtor hears the callback offer; the backends get a ``callback_request``."""
    agent.outcome = agent.outcome or "callback"
    add_to_outbox(session, ctx.topics.contact_outcomes, ResponseReceivedEvent(  # type: ignore[attr-defined]
        id=outcome_id("callback", call.dispatch_id), source=ctx.source,  # type: ignore[attr-defined]
        subject=call.debtor_id, correlationid=call.request_id,
        data=ResponseReceived(debtor_id=call.debtor_id, dispatch_id=call.dispatch_id, channel="voice",
                              kind="callback_request", address=call.address, occurred_at=now),
    ))
    answer = VoiceResponse()
    answer.say(OFFER[_lang(call.locale)], language=twiml.say_language(call.locale))
    answer.hangup()
    return str(answer)


async def _rows(session: AsyncSession, dispatch_id: str) -> tuple[CallSession | None, AgentCall | None]:
    call = (await session.execute(select(CallSession).where(CallSession.dispatch_id == dispatch_id)
                                  .with_for_update())).scalar_one_or_none()
    agent = await session.get(AgentCall, dispatch_id)
    return call, agent


async def bridge(ctx: object, pacer: Pacer, dispatch_id: str) -> str:
    now = ctx.clock()  # type: ignore[attr-defined]
    async with ctx.db.transaction() as session:  # type: ignore[attr-defined]
        call, agent = await _rows(session, dispatch_id)
        if call is None or agent is None:
            return twiml.hangup()
        agent.script_played = True
        if agent.bridged or not pacer.free_agent(agent.queue):
            return _offer_callback(ctx, session, call, agent, now)
        agent.bridged = True
        await pacer.connect(agent.queue, dispatch_id)
        answer = VoiceResponse()
        dial = Dial(timeout=agent.wait_s, action=_url(ctx, DIALED_PATH, dispatch_id), method="POST")
        whisper = _url(ctx, WHISPER_PATH, dispatch_id)
        if agent.dial.startswith("sip:"):
            dial.sip(agent.dial, url=whisper, method="POST")
        else:
            dial.number(agent.dial, url=whisper, method="POST")
        answer.append(dial)
        return str(answer)


async def whisper(ctx: object, dispatch_id: str) -> str:
    async with ctx.db.sessions() as session:  # type: ignore[attr-defined]
        call = (await session.execute(select(CallSession).where(CallSession.dispatch_id == dispatch_id))
                ).scalar_one_or_none()
        agent = await session.get(AgentCall, dispatch_id)
    answer = VoiceResponse()
    if call is not None and agent is not None:
        answer.say(WHISPER[_lang(call.locale)].format(account=agent.account_id),
                   language=twiml.say_language(call.locale))
    return str(answer)


async def dialed(ctx: object, pacer: Pacer, dispatch_id: str, params: dict[str, str]) -> str:
    """The ``<Dial>`` ended: talked to an agent (``agent_connected``), or the callback offer."""
    now = ctx.clock()  # type: ignore[attr-defined]
    async with ctx.db.transaction() as session:  # type: ignore[attr-defined]
        call, agent = await _rows(session, dispatch_id)
        if call is None or agent is None:
            return twiml.hangup()
        await pacer.disconnect(agent.queue, dispatch_id)
        if params.get("DialCallStatus") != "completed":
            return _offer_callback(ctx, session, call, agent, now)
        try:
            talk = max(0, int(params.get("DialCallDuration") or 0))
        except ValueError:
            talk = 0
        if agent.outcome != "agent_connected":
            agent.outcome, agent.talk_time_s = "agent_connected", talk
            add_to_outbox(session, ctx.topics.contact_outcomes,  # type: ignore[attr-defined]
                          _delivery(ctx, call, "agent_connected", now, call.call_sid, talk))
        answer = VoiceResponse()
        answer.say(GOODBYE[_lang(call.locale)], language=twiml.say_language(call.locale))
        answer.hangup()
        return str(answer)


async def call_ended(ctx: object, pacer: Pacer, session: AsyncSession, dispatch_id: str, status: str,
                     now: datetime) -> None:
    """A final call status (in the status callback's transaction): abandoned, and the pacer's accounting."""
    agent = await session.get(AgentCall, dispatch_id)
    if agent is None:
        return
    human = status == "conversation"
    outcome = agent.outcome or ("abandoned" if human and not agent.script_played else status)
    if human and not agent.script_played and agent.outcome is None:
        call = (await session.execute(select(CallSession).where(CallSession.dispatch_id == dispatch_id))
                ).scalar_one_or_none()
        if call is not None:
            agent.outcome = "abandoned"
            add_to_outbox(session, ctx.topics.contact_outcomes,  # type: ignore[attr-defined]
                          _delivery(ctx, call, "abandoned", now, call.call_sid))
            log.info("abandoned call", dispatch_id=dispatch_id, queue=agent.queue)
    await pacer.finish(dispatch_id, human=human, outcome=outcome)


class Availability(BaseModel):
    available: int = Field(ge=0, le=10_000)


def agent_routes() -> APIRouter:
    """Ops: agents' availability per queue; Twilio: bridge, whisper and dial result (signed)."""
    router = APIRouter()

    def pacer_of(request: Request) -> Pacer:
        pacer: Pacer = request.app.state.pacer
        return pacer

    @router.put("/v1/agents/{queue}/availability", dependencies=[Depends(require_role("editor"))], tags=["agents"])
    async def set_availability(queue: str, body: Availability, request: Request) -> dict[str, object]:
        state = await pacer_of(request).set_available(queue, body.available)
        return pacer_of(request).view(state.name)

    @router.get("/v1/agents/{queue}", dependencies=[Depends(require_role("viewer"))], tags=["agents"])
    async def queue_view(queue: str, request: Request) -> dict[str, object]:
        return pacer_of(request).view(queue)

    @router.post(BRIDGE_PATH, tags=["webhooks"])
    async def bridge_call(dispatch_id: str, request: Request, ctx: ContextDep) -> Response:
        await verified_params(request, ctx)
        return Response(await bridge(ctx, pacer_of(request), dispatch_id), media_type=TWIML)

    @router.post(WHISPER_PATH, tags=["webhooks"])
    async def whisper_agent(dispatch_id: str, request: Request, ctx: ContextDep) -> Response:
        await verified_params(request, ctx)
        return Response(await whisper(ctx, dispatch_id), media_type=TWIML)

    @router.post(DIALED_PATH, tags=["webhooks"])
    async def dial_result(dispatch_id: str, request: Request, ctx: ContextDep) -> Response:
        params = await verified_params(request, ctx)
        return Response(await dialed(ctx, pacer_of(request), dispatch_id, params), media_type=TWIML)

    return router
