"""Releases deferred contacts when due. State lives in the database, so it survives restarts.

Each release is its own transaction that takes the debtor's lock and re-reads the deferral as
still pending (``FOR UPDATE SKIP LOCKED`` on PostgreSQL), so with several instances running a
deferral is released exactly once, and re-evaluated against the ledger as it is at release.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime

from sqlalchemy import select

from services.orchestrator.runtime import service
from services.orchestrator.runtime.models import DeferredContactRow
from shared.logging import get_logger

log = get_logger(__name__)


class DeferralScheduler:
    def __init__(self, rt: service.Runtime, interval: float, batch_size: int = 500) -> None:
        self.rt, self.interval, self.batch_size = rt, interval, batch_size
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.released = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="deferral-scheduler")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def ping(self) -> None:
        if self._task is not None and self._task.done():
            raise RuntimeError("deferral scheduler stopped")

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.release_due(self.rt.ctx.clock())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database may be briefly away: try again next tick
                log.warning("deferral release failed; retrying", error=f"{type(exc).__name__}: {exc}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self.interval)

    async def release_due(self, now: datetime) -> int:
        """Release every deferral due at ``now`` (one pass); returns how many this call released."""
        db = self.rt.ctx.db
        async with self.rt.unit_of_work() as session:  # (on SQLite every transaction takes the write lock)
            due = (await session.execute(
                select(DeferredContactRow.id, DeferredContactRow.debtor_id)
                .where(DeferredContactRow.state == "pending", DeferredContactRow.not_before <= now)
                .order_by(DeferredContactRow.not_before, DeferredContactRow.id)
                .limit(self.batch_size)
            )).all()
        released = 0
        for deferred_id, debtor_id in due:
            async with self.rt.unit_of_work() as session:
                await service.lock_debtor(self.rt, session, debtor_id)
                stmt = select(DeferredContactRow).where(
                    DeferredContactRow.id == deferred_id, DeferredContactRow.state == "pending"
                )
                if db.is_postgres:
                    stmt = stmt.with_for_update(skip_locked=True)
                deferred = (await session.execute(stmt)).scalar_one_or_none()
                if deferred is None:
                    continue  # another instance released it, or an event cancelled it
                await service.release(self.rt, session, deferred, now)
                released += 1
        self.released += released
        return released
