"""HTTP: a debtor's call recordings (viewer): metadata and the provider's URL, never the audio."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel
from sqlalchemy import select

from services.orchestrator.recordings.models import CallRecordingRow
from shared.http import require_role

router = APIRouter(tags=["recordings"], dependencies=[Depends(require_role("viewer"))])


class RecordingView(BaseModel):
    """A call recording's metadata; the media stays at the provider and is never fetched."""

    recording_sid: str
    dispatch_id: str
    request_id: str | None = None
    call_sid: str
    provider: str
    duration_s: int
    url: str | None = None
    occurred_at: str


class RecordingList(BaseModel):
    items: list[RecordingView]


@router.get("/v1/debtors/{debtor_id}/recordings", response_model=RecordingList)
async def list_recordings(debtor_id: str, request: Request, limit: int = Query(100, ge=1, le=500)) -> RecordingList:
    async with request.app.state.ctx.db.sessions() as session:
        rows = (await session.execute(
            select(CallRecordingRow).where(CallRecordingRow.debtor_id == debtor_id)
            .order_by(CallRecordingRow.occurred_at.desc()).limit(limit)
        )).scalars().all()
    return RecordingList.model_validate({"items": [{
        "recording_sid": r.recording_sid, "dispatch_id": r.dispatch_id, "request_id": r.request_id,
        "call_sid": r.call_sid, "provider": r.provider, "duration_s": r.duration_s, "url": r.url,
        "occurred_at": r.occurred_at.isoformat(),
    } for r in rows]})
