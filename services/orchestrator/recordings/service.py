"""Recording metadata from the voice service, attached to the debtor's timeline (one transaction)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator.recordings.models import CallRecordingRow
from services.orchestrator.recordings.notices import recording_notice
from services.orchestrator.runtime import validation
from services.orchestrator.runtime.unit import Runtime
from shared.events.contracts import CallRecorded, ContactRequested

RECORDINGS = "orchestrator.recordings"


def dispatch_fields(rt: Runtime, request: ContactRequested, jurisdiction: str | None, locale: str,
                    channel: str) -> dict[str, Any]:
    """``record_call`` and ``recording_notice`` of a dispatch: voice calls of segments that record."""
    if channel != "voice" or not rt.strategy.plan(request.account).record_calls:
        return {}
    return {"record_call": True,
            "recording_notice": recording_notice(rt.policy, jurisdiction or "default", locale)}


def record(session: AsyncSession, data: CallRecorded, now: datetime) -> None:
    """Attach a recording to the debtor's timeline, in the runtime's unit of work (the inbox already
    deduplicated the event under :data:`RECORDINGS`)."""
    session.add(CallRecordingRow(
        recording_sid=data.recording_sid, dispatch_id=data.dispatch_id, request_id=data.request_id,
        debtor_id=data.debtor_id, call_sid=data.call_sid, provider=data.provider, duration_s=data.duration_s,
        url=data.url, occurred_at=validation.aware(data.occurred_at), at=now,
    ))
