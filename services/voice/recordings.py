"""``POST /webhooks/twilio/recording-status``: a recorded call's metadata, published to the timeline.

Signed like every Twilio webhook (403 otherwise). Only ``completed`` recordings are published, once per
``RecordingSid``; the media URL is passed on as data and never fetched, and it is not logged.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.voice.calls import RECORDING_STATUS_PATH
from services.voice.models import CallSession
from services.voice.webhooks import ContextDep, verified_params
from shared.channels.callbacks import first_receipt
from shared.channels.outcomes import outcome_id
from shared.db import add_to_outbox
from shared.events.contracts import CallRecorded, CallRecordedEvent
from shared.logging import get_logger

log = get_logger(__name__)


def recording_webhooks() -> APIRouter:
    router = APIRouter(tags=["twilio"])

    @router.post(RECORDING_STATUS_PATH, status_code=204, response_class=Response)
    async def recording_status(request: Request, ctx: ContextDep, dispatch: str | None = None) -> Response:
        params = await verified_params(request, ctx)
        sid, status = params.get("RecordingSid", ""), params.get("RecordingStatus", "")
        if not sid or status != "completed":
            ctx.count(f"recording_{status or 'missing'}")
            return Response(status_code=204)
        now = ctx.clock()

        async def publish(session: AsyncSession) -> tuple[str, int] | None:
            call = None
            if dispatch:
                call = (await session.execute(
                    select(CallSession).where(CallSession.dispatch_id == dispatch))).scalar_one_or_none()
            if call is None and params.get("CallSid"):
                call = (await session.execute(
                    select(CallSession).where(CallSession.call_sid == params["CallSid"]))).scalar_one_or_none()
            if call is None:
                log.warning("recording for an unknown call", recording_sid=sid)
                return None
            if not await first_receipt(session, sid, "recording-completed", now):
                return None
            try:
                duration = max(0, int(params.get("RecordingDuration") or 0))
            except ValueError:
                duration = 0
            event = CallRecordedEvent(
                id=outcome_id(call.dispatch_id, "recording", sid), source=ctx.source, subject=call.debtor_id,
                correlationid=call.request_id, time=now,
                data=CallRecorded(
                    dispatch_id=call.dispatch_id, request_id=call.request_id, debtor_id=call.debtor_id,
                    provider=ctx.provider, call_sid=params.get("CallSid") or call.call_sid or "",
                    recording_sid=sid, duration_s=duration, url=params.get("RecordingUrl", ""), occurred_at=now,
                ),
            )
            add_to_outbox(session, ctx.topics.contact_outcomes, event)
            return call.dispatch_id, duration

        # Answered once committed (through the service's group writer): a failure is a 5xx, Twilio retries.
        published = await ctx.writer.run(publish)
        if published is not None:
            log.info("call recording published", recording_sid=sid, dispatch_id=published[0], duration_s=published[1])
        return Response(status_code=204)

    return router
