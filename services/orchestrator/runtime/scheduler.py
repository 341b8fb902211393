"""Releases deferred contacts when due. State lives in the database, so it survives restarts.

Due deferrals are released in batches: one transaction locks the batch's debtors (sorted), reads
their pending deferrals under those locks and re-decides each due one against the ledger as it is
at release. A deferral another instance released (or an event cancelled) meanwhile is no longer
pending under the lock, so with several instances running a deferral is released exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime

from sqlalchemy import select

from services.orchestrator.runtime import events, operations
from services.orchestrator.runtime.models import DeferredContactRow
from services.orchestrator.runtime.unit import Runtime
from shared.logging import get_logger

log = get_logger(__name__)


class DeferralScheduler:
    def __init__(self, rt: Runtime, interval: float, batch_size: int = 500) -> None:
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

    async def release_due(self, now: datetime, chunk: int = 100) -> int:
        """Release every deferral due at ``now`` (one pass); returns how many this call released."""
        async with self.rt.ctx.db.read_sessions() as session:
            due = (await session.execute(
                select(DeferredContactRow.id, DeferredContactRow.debtor_id)
                .where(DeferredContactRow.state == "pending", DeferredContactRow.not_before <= now)
                .order_by(DeferredContactRow.not_before, DeferredContactRow.id)
                .limit(self.batch_size)
            )).all()
        released = 0
        for start in range(0, len(due), chunk):
            part = due[start:start + chunk]
            async with self.rt.unit_of_work() as session:
                async with operations.batch_for(self.rt, session, now, {debtor_id for _, debtor_id in part}) as batch:
                    pending = {d.id: d for debtor_id in {d for _, d in part} for d in batch.pending(debtor_id)}
                    wanted = [pending[deferred_id] for deferred_id, _ in part if deferred_id in pending]
                    await batch.load_requests(d.request_id for d in wanted)
                    for deferred in wanted:
                        if deferred.state != "pending":
                            continue  # re-decided already in this batch (cancelled by an earlier release)
                        await events.release(batch, deferred, now)
                        released += 1
        self.released += released
        return released
