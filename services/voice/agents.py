"""Calls bridged to agents (progressive dialing): the bridge after the opening script, the hold line, the
whisper, the callback offer, the abandoned-call cap, and the outcomes ``agent_connected`` (with talk time)
and ``abandoned``.

A person on a queue call hears the opening script and the IVR inside ``<Gather>``; when it ends (or on
key 2) Twilio fetches ``/voice/bridge/{id}``, and reaching it proves the script played. With a free agent
(and no one waiting before this person) the answer is ``<Dial timeout=wait_s action=/voice/dialed/{id}>``
to the queue's number or SIP address, whose agent first hears ``/voice/whisper/{id}`` (the account).
Otherwise the person joins the hold line: ``<Enqueue waitUrl=/voice/hold/{id} action=/voice/queued/{id}>``.
Each wait document (``/voice/hold``) says the hold message once, then pauses ``hold_poll_s``; when an agent
is free and it is this person's turn it answers ``<Leave/>`` and the ``<Enqueue>`` action dials the agent;
after ``wait_s`` seconds on hold (Twilio's ``QueueTime``, summed over the person's stays in the line, and a
ring-out counted as ``wait_s``) it leaves too, and the person hears the callback offer and a
``callback_request`` response is published. An agent who is busy sends the person back to the line while
hold time remains.

A person who hangs up before the bridge (the script unfinished) is an ``abandoned`` call; one who heard the
script never is (a key press, the hold, the offer). At the campaign's abandoned-call cap the calls are
placed in ``ivr`` mode: the plain IVR (key 2 records a callback request), no bridge, no pacing.
"""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import Boolean, DateTime, Index, Integer, String, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column
from twilio.twiml.voice_response import Dial, VoiceResponse

from services.voice import twiml
from services.voice.models import CallSession
from services.voice.pacing import Pacer, PacingUnavailable
from services.voice.webhooks import ContextDep, verified_params
from shared.channels.outcomes import outcome_id
from shared.db import Base, Database, add_to_outbox
from shared.events.contracts import (
    ContactDispatched,
    DeliveryUpdated,
    DeliveryUpdatedEvent,
    ResponseReceived,
    ResponseReceivedEvent,
)
from shared.events.envelope import utcnow
from shared.http import Problem, require_role
from shared.logging import get_logger

log = get_logger(__name__)

BRIDGE_PATH = "/voice/bridge/{dispatch_id}"
WHISPER_PATH = "/voice/whisper/{dispatch_id}"
DIALED_PATH = "/voice/dialed/{dispatch_id}"
HOLD_PATH = "/voice/hold/{dispatch_id}"
QUEUED_PATH = "/voice/queued/{dispatch_id}"
#: A queue call bridged to agents, or placed as a plain IVR call (the campaign is at its abandoned-call cap).
BRIDGE, IVR = "bridge", "ivr"
TWIML = "application/xml"
OFFER = {
    "es": "En este momento no hay asesores disponibles. Registramos su solicitud y un asesor le devolverá la llamada.",
    "en": "No agent is available right now. We have recorded your request and an agent will call you back.",
}
WHISPER = {"es": "Cliente en línea. Cuenta {account}.", "en": "Customer on the line. Account {account}."}
HOLD = {
    "es": "Todos nuestros asesores están ocupados. Por favor permanezca en línea, en breve le atenderemos.",
    "en": "All our agents are busy. Please stay on the line, an agent will be with you shortly.",
}
GOODBYE = {"es": "Gracias por su llamada.", "en": "Thank you for your call."}


class AgentCall(Base):
    """A call of an agent queue, stored before it is placed; it follows the call to its end."""

    __tablename__ = "queue_calls"
    __table_args__ = (Index("ix_queue_calls_campaign_ended", "campaign_id", "ended_at"),)

    dispatch_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    queue: Mapped[str] = mapped_column(String(100))
    dial: Mapped[str] = mapped_column(String(320))
    wait_s: Mapped[int] = mapped_column(Integer)
    account_id: Mapped[str] = mapped_column(String(200))
    #: ``""`` for a request without a campaign: the abandoned-call rate is per campaign.
    campaign_id: Mapped[str] = mapped_column(String(200), default="")
    mode: Mapped[str] = mapped_column(String(10), default=BRIDGE)
    script_played: Mapped[bool] = mapped_column(Boolean, default=False)
    #: An agent was dialled for this person at least once.
    bridged: Mapped[bool] = mapped_column(Boolean, default=False)
    #: Seconds on hold so far (Twilio's ``QueueTime`` of each stay in the line).
    held_s: Mapped[int] = mapped_column(Integer, default=0)
    outcome: Mapped[str | None] = mapped_column(String(40), nullable=True)
    talk_time_s: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: Set with the final status: a person answered (the abandoned-call rate's denominator).
    answered: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
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
                          account_id=dispatch.account_id, campaign_id=queue.campaign_id or "", mode=BRIDGE,
                          created_at=utcnow()))


async def without_bridge(db: Database, dispatch_id: str) -> None:
    """The campaign is at its abandoned-call cap: this call is placed as a plain IVR call (before it is)."""
    async with db.transaction() as session:
        await session.execute(update(AgentCall).where(AgentCall.dispatch_id == dispatch_id, AgentCall.mode == BRIDGE)
                              .values(mode=IVR))


async def live_twiml(ctx: object, dispatch_id: str, voice_script: str, prompt: str | None, locale: str,
                     action: str, timeout_s: int) -> str | None:
    """The live TwiML of a queue call (script and IVR, then the bridge); ``None`` for an ordinary call."""
    async with ctx.db.sessions() as session:  # type: ignore[attr-defined]
        call = await session.get(AgentCall, dispatch_id)
    if call is None or call.mode != BRIDGE:
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
    """A call bridged to agents. In the caller's transaction (a second connection there could wait on the
    first: SQLite has one writer)."""
    call = await session.get(AgentCall, dispatch_id)
    return call is not None and call.mode == BRIDGE


async def script_heard(session: AsyncSession, dispatch_id: str) -> None:
    """A key pressed during the script (1, 9, ...): the person heard it, the call is not abandoned."""
    call = await session.get(AgentCall, dispatch_id)
    if call is not None:
        call.script_played = True


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
                             channel="voice", status=status, provider="twilio",
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


def _dial(ctx: object, agent: AgentCall, dispatch_id: str) -> str:
    """Ring the queue's agents; the one who answers first hears the whisper."""
    agent.bridged = True
    answer = VoiceResponse()
    dial = Dial(timeout=agent.wait_s, action=_url(ctx, DIALED_PATH, dispatch_id), method="POST")
    whisper = _url(ctx, WHISPER_PATH, dispatch_id)
    if agent.dial.startswith("sip:"):
        dial.sip(agent.dial, url=whisper, method="POST")
    else:
        dial.number(agent.dial, url=whisper, method="POST")
    answer.append(dial)
    return str(answer)


def _enqueue(ctx: object, agent: AgentCall, dispatch_id: str) -> str:
    """Into the hold line (Twilio's queue names are at most 64 characters)."""
    answer = VoiceResponse()
    answer.enqueue(agent.queue[:64], action=_url(ctx, QUEUED_PATH, dispatch_id), method="POST",
                   wait_url=_url(ctx, HOLD_PATH, dispatch_id), wait_url_method="POST")
    return str(answer)


def _seconds(value: str | None) -> int:
    try:
        return max(0, int(float(value or 0)))
    except ValueError:
        return 0


async def bridge(ctx: object, pacer: Pacer, dispatch_id: str) -> str:
    """The script played: an agent now if one is free and no one waits before this person, else the hold."""
    now = ctx.clock()  # type: ignore[attr-defined]
    async with ctx.db.transaction() as session:  # type: ignore[attr-defined]
        call, agent = await _rows(session, dispatch_id)
        if call is None or agent is None:
            return twiml.hangup()
        agent.script_played = True
        if agent.bridged or agent.mode != BRIDGE:
            return _offer_callback(ctx, session, call, agent, now)
        if await pacer.take_agent(agent.queue, dispatch_id):
            return _dial(ctx, agent, dispatch_id)
        await pacer.hold(agent.queue, dispatch_id)
        return _enqueue(ctx, agent, dispatch_id)


async def hold(ctx: object, pacer: Pacer, dispatch_id: str, params: dict[str, str]) -> str:
    """One wait document: ``<Leave/>`` when an agent is this person's or the hold time is over, else hold on."""
    queue_time = _seconds(params.get("QueueTime"))
    async with ctx.db.sessions() as session:  # type: ignore[attr-defined]
        call = (await session.execute(select(CallSession).where(CallSession.dispatch_id == dispatch_id))
                ).scalar_one_or_none()
        agent = await session.get(AgentCall, dispatch_id)
    answer = VoiceResponse()
    if call is None or agent is None:
        answer.leave()
        return str(answer)
    # Sent back by an agent who was busy or did not answer: hold one round before the next try.
    back = agent.bridged and queue_time == 0
    waited = agent.held_s + queue_time
    if (not back and await pacer.take_agent(agent.queue, dispatch_id)) or waited >= agent.wait_s:
        answer.leave()
        return str(answer)
    if waited == 0:  # once, as the person first joins the line
        answer.say(HOLD[_lang(call.locale)], language=twiml.say_language(call.locale))
    poll = ctx.settings.pacing.hold_poll_s  # type: ignore[attr-defined]
    answer.pause(length=max(1, min(poll, agent.wait_s - waited)))
    return str(answer)


async def queued(ctx: object, pacer: Pacer, dispatch_id: str, params: dict[str, str]) -> str:
    """The person left the hold line: dial the agent now theirs, else the callback offer."""
    result = (params.get("QueueResult") or "").lower()
    now = ctx.clock()  # type: ignore[attr-defined]
    async with ctx.db.transaction() as session:  # type: ignore[attr-defined]
        call, agent = await _rows(session, dispatch_id)
        if call is None or agent is None:
            return twiml.hangup()
        agent.held_s += _seconds(params.get("QueueTime"))
        if result == "leave" and await pacer.is_connected(agent.queue, dispatch_id):
            return _dial(ctx, agent, dispatch_id)
        await pacer.leave_hold(agent.queue, dispatch_id)
        if result == "hangup":  # gone while waiting: heard the script, not abandoned, offered nothing
            agent.outcome = agent.outcome or "left_hold"
            return twiml.hangup()
        return _offer_callback(ctx, session, call, agent, now)


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
        status = params.get("DialCallStatus")
        if status != "completed":
            if status == "no-answer":  # the person waited while the agent's phone rang out the timeout
                agent.held_s += agent.wait_s
            if agent.held_s < agent.wait_s:  # hold time left: back in the line for the next agent
                await pacer.hold(agent.queue, dispatch_id)
                return _enqueue(ctx, agent, dispatch_id)
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
    """A final call status (in the status callback's transaction): abandoned, the campaign's figure, and
    the pacer's accounting."""
    agent = await session.get(AgentCall, dispatch_id)
    if agent is None:
        return
    human = status == "conversation"
    agent.answered, agent.ended_at = human, now
    if agent.mode == BRIDGE and human and not agent.script_played and agent.outcome is None:
        call = (await session.execute(select(CallSession).where(CallSession.dispatch_id == dispatch_id))
                ).scalar_one_or_none()
        if call is not None:
            agent.outcome = "abandoned"
            add_to_outbox(session, ctx.topics.contact_outcomes,  # type: ignore[attr-defined]
                          _delivery(ctx, call, "abandoned", now, call.call_sid))
            log.info("abandoned call", dispatch_id=dispatch_id, queue=agent.queue)
    agent.outcome = agent.outcome or status
    if agent.mode == BRIDGE:
        await pacer.finish(agent.queue, dispatch_id, human=human, outcome=agent.outcome)
    pacer.ended(agent.campaign_id)


class Availability(BaseModel):
    available: int = Field(ge=0, le=10_000)


def agent_routes() -> APIRouter:
    """Ops: agents' availability per queue, a campaign's abandoned-call figure; Twilio (signed): bridge,
    hold, whisper and the results of the hold and of the dial."""
    router = APIRouter()

    def pacer_of(request: Request) -> Pacer:
        pacer: Pacer = request.app.state.pacer
        return pacer

    @router.put("/v1/agents/{queue}/availability", dependencies=[Depends(require_role("editor"))], tags=["agents"])
    async def set_availability(queue: str, body: Availability, request: Request) -> dict[str, object]:
        try:
            await pacer_of(request).set_available(queue, body.available)
            return await pacer_of(request).view(queue)
        except PacingUnavailable as exc:
            raise Problem(503, "Pacing state unavailable", "the shared pacing state cannot be reached") from exc

    @router.get("/v1/agents/{queue}", dependencies=[Depends(require_role("viewer"))], tags=["agents"])
    async def queue_view(queue: str, request: Request) -> dict[str, object]:
        try:
            return await pacer_of(request).view(queue)
        except PacingUnavailable as exc:
            raise Problem(503, "Pacing state unavailable", "the shared pacing state cannot be reached") from exc

    @router.get("/v1/agents/campaigns/{campaign_id}", dependencies=[Depends(require_role("viewer"))],
                tags=["agents"])
    async def campaign_view(campaign_id: str, request: Request) -> dict[str, object]:
        """The campaign's abandoned-call figure as pacing sees it, and what it does about it."""
        pacer = pacer_of(request)
        figure = await pacer.figures.figure(campaign_id)
        return {"campaign_id": campaign_id, "answered": figure.answered, "abandoned": figure.abandoned,
                "abandoned_rate": round(figure.rate, 4), "cap": pacer.abandon_cap,
                "throttled": figure.rate >= pacer.abandon_cap * pacer.throttle_share,
                "bridging": figure.rate < pacer.abandon_cap}

    @router.post(BRIDGE_PATH, tags=["webhooks"])
    async def bridge_call(dispatch_id: str, request: Request, ctx: ContextDep) -> Response:
        await verified_params(request, ctx)
        return Response(await bridge(ctx, pacer_of(request), dispatch_id), media_type=TWIML)

    @router.post(WHISPER_PATH, tags=["webhooks"])
    async def whisper_agent(dispatch_id: str, request: Request, ctx: ContextDep) -> Response:
        await verified_params(request, ctx)
        return Response(await whisper(ctx, dispatch_id), media_type=TWIML)

    @router.post(HOLD_PATH, tags=["webhooks"])
    async def hold_music(dispatch_id: str, request: Request, ctx: ContextDep) -> Response:
        params = await verified_params(request, ctx)
        return Response(await hold(ctx, pacer_of(request), dispatch_id, params), media_type=TWIML)

    @router.post(QUEUED_PATH, tags=["webhooks"])
    async def left_hold(dispatch_id: str, request: Request, ctx: ContextDep) -> Response:
        params = await verified_params(request, ctx)
        return Response(await queued(ctx, pacer_of(request), dispatch_id, params), media_type=TWIML)

    @router.post(DIALED_PATH, tags=["webhooks"])
    async def dial_result(dispatch_id: str, request: Request, ctx: ContextDep) -> Response:
        params = await verified_params(request, ctx)
        return Response(await dialed(ctx, pacer_of(request), dispatch_id, params), media_type=TWIML)

    return router
