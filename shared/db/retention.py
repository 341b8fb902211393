"""Pruning: rows a service needs only for a while are deleted once older than their retention.

Each :class:`PruneTarget` names a table, its time column and how long to keep a row. A pass deletes,
per target, the rows older than ``now - keep`` in chunks of ``chunk_rows`` (a set-based ``DELETE …
WHERE key IN (SELECT key … WHERE at < :cutoff LIMIT n)``, one short transaction each, so writers are
never held up for long), until a chunk comes back short. ``cadencia_rows_pruned_total{table}`` counts
what went.

    pruner = Pruner(db, [inbox_target(settings.retention)], settings.retention, registry=app.state.metrics)
    await pruner.start()                     # in the lifespan; stack.push_async_callback(pruner.stop)

What is safe to prune is the caller's choice; ``RetentionSettings`` refuses to keep the de-duplication
tables (inbox, webhook receipts) for less than the broker keeps records.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import ColumnElement, Table, delete, select, tuple_

from shared.config import RetentionSettings
from shared.db.attempts import ConsumerAttempt
from shared.db.database import Database
from shared.db.inbox import InboxRecord
from shared.events.envelope import utcnow
from shared.logging import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class PruneTarget:
    """Rows of ``table`` whose ``at`` column is older than ``keep`` go.

    ``at`` leads an index of ``table`` (a test holds every service's targets to it), so a pass reads
    only the rows it deletes and one more, however large the table has grown, unless ``bounded``:
    a table that never holds more than a handful of rows, where an index would only slow its writers.
    """

    table: Table
    at: ColumnElement[Any]
    keep: timedelta
    bounded: bool = False

    @property
    def name(self) -> str:
        return str(self.table.name)


def _days(days: float) -> timedelta:
    return timedelta(days=days)


def inbox_target(retention: RetentionSettings) -> PruneTarget:
    """Event ids consumers applied: kept longer than the broker keeps the events (see ``RetentionSettings``)."""
    return PruneTarget(InboxRecord.__table__, InboxRecord.processed_at, _days(retention.inbox_days))  # type: ignore[arg-type]


def attempts_target(retention: RetentionSettings) -> PruneTarget:
    """Consumer attempt rows not touched for as long: partitions or groups that are gone. One row per
    group and partition, rewritten by every batch: bounded, and not indexed by time."""
    return PruneTarget(ConsumerAttempt.__table__, ConsumerAttempt.updated_at, _days(retention.inbox_days),  # type: ignore[arg-type]
                       bounded=True)


class Pruner:
    """Deletes rows past their retention, in chunks, every ``retention.interval_s`` seconds."""

    def __init__(
        self,
        db: Database,
        targets: Sequence[PruneTarget],
        retention: RetentionSettings,
        *,
        registry: CollectorRegistry | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.db, self.targets, self.clock = db, list(targets), clock
        self.interval_s, self.chunk_rows = retention.interval_s, retention.chunk_rows
        #: Rows deleted per table since start (also ``cadencia_rows_pruned_total``).
        self.pruned: dict[str, int] = {target.name: 0 for target in self.targets}
        self.passes = 0
        self._counter = Counter("cadencia_rows_pruned", "Rows deleted past their retention, by table", ["table"],
                                registry=registry) if registry is not None else None
        if self._counter is not None:
            for target in self.targets:
                self._counter.labels(target.name)  # the series exist before the first deletion
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self.failure: BaseException | None = None

    async def prune(self, now: datetime | None = None) -> dict[str, int]:
        """One pass over every target as of ``now`` (the clock's); returns the rows deleted per table."""
        now = now or self.clock()
        deleted: dict[str, int] = {}
        for target in self.targets:
            deleted[target.name] = await self._prune(target, now - target.keep)
        self.passes += 1
        return deleted

    async def _prune(self, target: PruneTarget, cutoff: datetime) -> int:
        keys = list(target.table.primary_key.columns)
        total = 0
        while True:
            chosen = select(*keys).where(target.at < cutoff).limit(self.chunk_rows)
            if len(keys) == 1:
                stmt = delete(target.table).where(keys[0].in_(chosen.scalar_subquery()))
            else:
                stmt = delete(target.table).where(tuple_(*keys).in_(chosen))
            async with self.db.transaction() as session:
                result = await session.execute(stmt)
            count = int(getattr(result, "rowcount", 0) or 0)
            total += count
            if count:
                self.pruned[target.name] += count
                if self._counter is not None:
                    self._counter.labels(target.name).inc(count)
            if count < self.chunk_rows or self._stop.is_set():
                break
        if total:
            log.info("rows pruned", table=target.name, rows=total, older_than=cutoff.isoformat())
        return total

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="pruner")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def ping(self) -> None:
        if self._task is not None and self._task.done() and not self._stop.is_set():
            raise RuntimeError("the pruner stopped")

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                await self.prune()
            except Exception as exc:  # a failed pass is logged and retried next time; it never stops the service
                self.failure = exc
                log.warning("pruning failed", error=f"{type(exc).__name__}: {exc}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.interval_s)
