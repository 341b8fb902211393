"""Aggregate counts over the orchestrator's tables; each query is a grouped count on an index."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator.dlq.models import DeadLetter
from services.orchestrator.runtime.models import (
    ContactRequestRow,
    DeferredContactRow,
    DispatchRow,
    ResponseRow,
    StatusHistoryRow,
    SuppressionRow,
)
from shared.db import OutboxRecord


async def _grouped(session: AsyncSession, *columns: Any) -> list[tuple[Any, ...]]:
    rows = await session.execute(select(*columns, func.count()).group_by(*columns))
    return [tuple(r) for r in rows]


async def collect(session: AsyncSession, now: datetime) -> dict[str, Any]:
    requests = dict(await _grouped(session, ContactRequestRow.status))
    dispatches: dict[str, dict[str, int]] = {}
    for channel, status, n in await _grouped(session, DispatchRow.channel, DispatchRow.status):
        dispatches.setdefault(channel, {})[status] = n
    suppressions = dict((
            await session.execute(
                select(SuppressionRow.reason, func.count())
                .where(SuppressionRow.lifted_at.is_(None))
                .group_by(SuppressionRow.reason)
            )
        ).all())
    responses = dict(await _grouped(session, ResponseRow.kind))
    pending = DeferredContactRow.state == "pending"
    deferred_pending = int(await session.scalar(select(func.count()).where(pending)) or 0)
    next_release = await session.scalar(select(func.min(DeferredContactRow.not_before)).where(pending))
    dead_letters = int(await session.scalar(select(func.count()).select_from(DeadLetter)) or 0)
    outbox_backlog = int(await session.scalar(select(func.count()).select_from(OutboxRecord)) or 0)
    recent_rows = (
        await session.execute(select(StatusHistoryRow).order_by(StatusHistoryRow.id.desc()).limit(25))
    ).scalars().all()
    recent = [
        {
            "at": r.at.isoformat(),
            "request_id": r.request_id,
            "debtor_id": r.debtor_id,
            "status": r.status,
            "channel": r.channel,
            "reason": r.reason,
            "not_before": r.not_before.isoformat() if r.not_before else None,
        }
        for r in recent_rows
    ]
    return {
        "generated_at": now.isoformat(),
        "requests": requests,
        "dispatches": dispatches,
        "deferred_pending": deferred_pending,
        "next_release": next_release.isoformat() if next_release else None,
        "suppressions": suppressions,
        "responses": responses,
        "dead_letters": dead_letters,
        "outbox_backlog": outbox_backlog,
        "recent": recent,
    }
