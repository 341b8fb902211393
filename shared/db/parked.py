"""Ops API over a service's parked outbox rows: list them, and replay (un-park) one with its key's followers.

Mounted by every service that relays an outbox (the orchestrator under its DLQ API). A replay
resets the attempts of the row and of the same key's rows parked after it, so they are relayed
again in their original order; if the cause persists they are parked again.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel
from sqlalchemy import func, select, update

from shared.db.database import Database
from shared.db.outbox import OutboxRecord
from shared.http import BeforeId, Problem, RowId, require_role


class ParkedRowView(BaseModel):
    id: int
    topic: str
    key: str | None
    event_id: str
    event_type: str
    size: int
    attempts: int
    last_error: str | None
    created_at: datetime
    parked_at: datetime | None


class ParkedPage(BaseModel):
    total: int
    items: list[ParkedRowView]


class ReplayedRows(BaseModel):
    replayed: list[int]


def _view(row: OutboxRecord) -> ParkedRowView:
    return ParkedRowView(id=row.id, topic=row.topic, key=row.key, event_id=row.event_id, event_type=row.event_type,
                         size=len(row.value), attempts=row.attempts, last_error=row.last_error,
                         created_at=row.created_at, parked_at=row.parked_at)


def parked_outbox_router(database: Callable[[Request], Database], prefix: str = "/v1/dlq/outbox") -> APIRouter:
    """Routes over the parked rows of the database ``database(request)`` returns."""
    router = APIRouter(prefix=prefix, tags=["ops"])

    @router.get("", response_model=ParkedPage, dependencies=[Depends(require_role("viewer"))])
    async def list_parked(
        request: Request, limit: int = Query(100, ge=1, le=1000), before_id: BeforeId = None
    ) -> ParkedPage:
        query = select(OutboxRecord).where(OutboxRecord.parked_at.is_not(None)).order_by(OutboxRecord.id.desc())
        if before_id:
            query = query.where(OutboxRecord.id < before_id)
        count = select(func.count()).select_from(OutboxRecord).where(OutboxRecord.parked_at.is_not(None))
        async with database(request).read_sessions() as session:
            rows = (await session.execute(query.limit(limit))).scalars().all()
            total = int(await session.scalar(count) or 0)
        return ParkedPage(total=total, items=[_view(r) for r in rows])

    @router.get("/{row_id}", response_model=ParkedRowView, dependencies=[Depends(require_role("viewer"))])
    async def get_parked(row_id: RowId, request: Request) -> ParkedRowView:
        async with database(request).read_sessions() as session:
            row = await session.get(OutboxRecord, row_id)
        if row is None or row.parked_at is None:
            raise Problem(404, "Not found", f"no parked outbox row {row_id}")
        return _view(row)

    @router.post("/{row_id}/replay", response_model=ReplayedRows, status_code=202,
                 dependencies=[Depends(require_role("admin"))])
    async def replay_parked(row_id: RowId, request: Request) -> ReplayedRows:
        db = database(request)
        async with db.transaction() as session:
            row = await session.get(OutboxRecord, row_id, with_for_update=True)
            if row is None or row.parked_at is None:
                raise Problem(404, "Not found", f"no parked outbox row {row_id}")
            same_key = OutboxRecord.key == row.key if row.key is not None else OutboxRecord.id == row.id
            ids = list((await session.execute(
                select(OutboxRecord.id).where(same_key, OutboxRecord.id >= row.id, OutboxRecord.parked_at.is_not(None))
                .order_by(OutboxRecord.id)
            )).scalars())
            await session.execute(update(OutboxRecord).where(OutboxRecord.id.in_(ids))
                                  .values(parked_at=None, attempts=0))
        return ReplayedRows(replayed=ids)

    return router
