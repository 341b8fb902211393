"""The Twilio Calls adapter of the shared dispatch pipeline (send log, at most once, rate limit, retries).

Composing a call stores its :class:`~services.voice.models.CallSession` (the rendered scripts) before the
call is placed, so the TwiML webhooks Twilio calls once the debtor answers serve exactly what was
rendered for this dispatch; the request itself only carries the URLs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from services.voice import twiml
from services.voice.models import CallSession
from services.voice.pacing import Pacer
from services.voice.settings import Settings
from shared.channels.ports import OutboundMessage, Unsendable
from shared.db import Database
from shared.events import aware, utcnow
from shared.events.contracts import Channel, ContactDispatched
from shared.providers.base import Accepted, Rejected, Retryable
from shared.providers.twilio import TwilioCalls
from shared.templates import RenderedMessage
from shared.tracing import callback_url as traced_url

TWIML_PATH = "/voice/twiml/{dispatch_id}"
GATHER_PATH = "/voice/gather/{dispatch_id}"
CALL_STATUS_PATH = "/webhooks/twilio/call-status"
RECORDING_STATUS_PATH = "/webhooks/twilio/recording-status"
STATUS_EVENTS = "initiated ringing answered completed"


def public(settings: Settings, path: str) -> str:
    return settings.public_url.rstrip("/") + path


def call_status_url(settings: Settings, dispatch_id: str) -> str:
    return public(settings, f"{CALL_STATUS_PATH}?dispatch={dispatch_id}")


@dataclass(frozen=True)
class _Paced:
    queue: str
    dispatch_id: str
    campaign: str
    #: The call must have started by then (its deadline, or send_before less the ring time).
    latest: datetime


class TwilioCallAdapter:
    channel: Channel = "voice"
    provider = "twilio"

    def __init__(self, client: TwilioCalls, settings: Settings, db: Database, pacer: Pacer | None = None) -> None:
        self.client, self.settings, self.db = client, settings, db
        # The pipeline places a call only with at least the ring time left before send_before.
        self.lead_time_s = float(settings.caller.ring_timeout_s)
        self.pacer = pacer or Pacer()
        #: Calls of an agent queue, by their TwiML URL: paced in ``send``.
        self._paced: dict[str, _Paced] = {}

    async def compose(
        self, dispatch: ContactDispatched, rendered: RenderedMessage, status_callback: str
    ) -> OutboundMessage:
        if not rendered.voice_script:
            raise Unsendable("template_error", f"template {rendered.key} v{rendered.version} has no voice_script")
        await self._store_session(dispatch, rendered)
        payload = {
            "To": dispatch.to,
            "From": self.settings.caller.caller_id,
            # The TwiML fetch (and so the IVR after it) continues the dispatch's trace.
            "Url": traced_url(public(self.settings, TWIML_PATH.format(dispatch_id=dispatch.dispatch_id))),
            "Method": "POST",
            "StatusCallback": status_callback,
            "StatusCallbackMethod": "POST",
            "StatusCallbackEvent": STATUS_EVENTS,
            "Timeout": str(self.settings.caller.ring_timeout_s),
        }
        if dispatch.record_call:
            # The whole call is recorded from the answer; only metadata comes back (signed callback).
            payload["Record"] = "true"
            payload["RecordingStatusCallback"] = public(
                self.settings, f"{RECORDING_STATUS_PATH}?dispatch={dispatch.dispatch_id}")
            payload["RecordingStatusCallbackEvent"] = "completed"
            payload["RecordingStatusCallbackMethod"] = "POST"
        if self.settings.amd:
            # Synchronous AMD: Twilio fetches the TwiML once it knows who answered (AnsweredBy), and with
            # DetectMessageEnd only after the greeting's beep, so the voicemail is recorded whole.
            payload["MachineDetection"] = "DetectMessageEnd"
        queue = dispatch.agent_queue
        if queue is not None:
            await self.pacer.configure(queue.name, queue.agents, queue.max_ratio)
            # The call may not start later than this (the pipeline's own check, less the ring time).
            latest = aware(dispatch.deadline)
            if dispatch.send_before is not None:
                latest = min(latest, aware(dispatch.send_before) - timedelta(seconds=self.lead_time_s))
            self._paced[payload["Url"]] = _Paced(queue.name, dispatch.dispatch_id, queue.campaign_id or "", latest)
        return OutboundMessage(to=dispatch.to, sender=self.settings.caller.caller_id, payload=payload)

    async def send(self, message: OutboundMessage) -> Accepted:
        url = message.payload.get("Url", "")
        paced = self._paced.get(url)
        if paced is not None and not await self.pacer.bridging(paced.campaign):
            # The campaign is at its abandoned-call cap: a plain IVR call, which no one waits on.
            from services.voice import agents

            await agents.without_bridge(self.db, paced.dispatch_id)
            self._paced.pop(url, None)
            paced = None
        if paced is not None:
            # Progressive dialing: no more calls in flight than the queue's agents can take; never waiting
            # past the instant the call must have started by (the pipeline checked send_before before).
            wait = max(0.0, min(self.settings.pacing_wait_s, (paced.latest - utcnow()).total_seconds()))
            if not await self.pacer.admit(paced.queue, paced.dispatch_id, timeout=wait, campaign=paced.campaign):
                raise Retryable("the agent queue is full", code="pacing", retry_after=self.settings.pacing_wait_s)
            self._paced.pop(url, None)
        try:
            return await self.client.create(message.payload)
        except (Rejected, Retryable):
            # Provably no call: it leaves the queue's flight at once (a later retry is admitted again).
            if paced is not None:
                await self.pacer.release(paced.queue, paced.dispatch_id)
                self._paced[url] = paced
            raise

    async def _store_session(self, dispatch: ContactDispatched, rendered: RenderedMessage) -> None:
        now = utcnow()
        values = {
            "dispatch_id": dispatch.dispatch_id, "call_sid": None, "debtor_id": dispatch.debtor_id,
            "request_id": dispatch.request_id, "address": dispatch.to, "locale": dispatch.locale,
            # A recorded call opens with the jurisdiction's notice, before anything else is said.
            "voice_script": " ".join(filter(None, [dispatch.recording_notice if dispatch.record_call else None,
                                                   rendered.voice_script])),
            "voicemail_script": rendered.voicemail_script,
            "ivr_prompt": twiml.ivr_prompt(rendered.ivr_prompts), "created_at": now, "updated_at": now,
        }
        insert = pg_insert if self.db.is_postgres else sqlite_insert
        async with self.db.transaction() as session:
            # A redelivered dispatch never gets here (the send log replays it); a concurrent twin keeps the first.
            await session.execute(
                insert(CallSession).values(**values).on_conflict_do_nothing(index_elements=["dispatch_id"])
            )
            from services.voice import agents  # (agents builds on the webhooks, which build on this module)

            await agents.remember(session, dispatch)
