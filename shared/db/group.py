"""Group commit: writes that arrive one at a time share one transaction (docs/internals.md: batches).

Provider results, delivery callbacks and inbound messages each change a row or two; a transaction
apiece made the database the bottleneck. A :class:`GroupWriter` is one task per process that takes
every write submitted in the last ``window_s`` (10 ms), or ``max_rows`` (500) of them if they come
faster, applies them in one transaction and commits, then resolves each submitter's future: a
submitter (a webhook answering its provider, a dispatch batch about to commit its offsets) goes on
only once its write is durable, exactly as with a transaction of its own.

A *kind* of write is an async function ``apply(session, writes) -> results`` that applies a list of
writes set-based (one query for all their rows, bulk inserts). Writes of one kind in a group go to
one call, in the order they were submitted; kinds run in the order they first appear. Each write
keeps the context it was submitted in (its trace and log bindings): a kind stages a write's outbox
rows through :meth:`Write.run`, so the events it publishes continue the submitter's trace.

When a group fails, each of its writes is applied again in a transaction of its own, so one bad
write fails only its own submitter.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from prometheus_client import Counter, Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.database import Database
from shared.db.sqlite_cursor import on_the_loop
from shared.logging import get_logger

log = get_logger(__name__)

T = TypeVar("T")
R = TypeVar("R")


@dataclass(eq=False)
class Write(Generic[T]):
    """One submitted write: its item, the context it was submitted in, the submitter's future."""

    item: T
    context: contextvars.Context
    future: asyncio.Future[Any] = field(repr=False)

    def run(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """Call ``fn`` in the submitter's context (its trace, its log bindings)."""
        return self.context.run(fn, *args, **kwargs)

    async def run_async(self, fn: Callable[..., Awaitable[R]], *args: Any) -> R:
        """Await ``fn(*args)`` in the submitter's context, its statements on the event loop's thread as
        the rest of the group's (``_apply``)."""
        return await asyncio.create_task(_awaited(fn, *args), context=self.context.copy())


async def _awaited(fn: Callable[..., Awaitable[R]], *args: Any) -> R:
    with on_the_loop():
        return await fn(*args)


#: Applies writes of one kind in the group's transaction; returns one result per write, in order.
Apply = Callable[[AsyncSession, Sequence[Write[Any]]], Awaitable[Sequence[Any]]]
#: One write applied on its own terms in the group's transaction (a webhook's few statements).
Unit = Callable[[AsyncSession], Awaitable[Any]]


class GroupCommitMetrics(Collector):
    """``cadencia_group_commit_writes{writer}``: writes per committed transaction (a histogram);
    ``cadencia_group_commit_splits_total{writer}``: groups that failed and were retried one write at a time."""

    def __init__(self, name: str) -> None:
        self.name = name
        # Not registered anywhere: yielded by this collector, on whichever registry registers it.
        self._writes = Histogram("cadencia_group_commit_writes", "Writes committed per transaction", ["writer"],
                                 registry=None, buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500))
        self._splits = Counter("cadencia_group_commit_splits", "Groups retried one write at a time", ["writer"],
                               registry=None)

    def committed(self, writes: int) -> None:
        self._writes.labels(self.name).observe(writes)

    def split(self) -> None:
        self._splits.labels(self.name).inc()

    def collect(self) -> Iterator[Metric]:
        yield from self._writes.collect()
        yield from self._splits.collect()


class WriterStopped(RuntimeError):
    """The writer is stopped: nothing more is committed (a webhook answers 5xx, its provider retries)."""


class GroupWriter:
    """One task per process that commits what was submitted in the last ``window_s`` together."""

    def __init__(
        self, db: Database, *, window_s: float = 0.010, max_rows: int = 500, name: str = "group-writer"
    ) -> None:
        self.db, self.window_s, self.max_rows, self.name = db, window_s, max(1, max_rows), name
        self._pending: list[tuple[Apply, Write[Any]]] = []
        self._oldest = 0.0
        self._arrived = asyncio.Event()
        self._full = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        #: Transactions committed, and the writes they carried (for metrics and tests).
        self.commits = 0
        self.rows = 0
        #: Groups that failed and were applied again one write at a time.
        self.split = 0
        #: For the service's ``/metrics`` registry.
        self.metrics = GroupCommitMetrics(name)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        """Commit what is pending, then stop; later writes are refused with :class:`WriterStopped`."""
        self._stopping = True
        self._arrived.set()
        self._full.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def ping(self) -> None:
        if self._task is not None and self._task.done():
            raise RuntimeError(f"{self.name} stopped")

    def submit(self, apply: Apply, item: Any) -> asyncio.Future[Any]:
        """Queue ``item`` for ``apply``; the future resolves (to its result) once it is committed.

        The write happens even if the caller stops waiting: a result that is known is never dropped."""
        if self._stopping or (self._task is not None and self._task.done()):
            raise WriterStopped(f"{self.name} is stopped")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._pending:
            self._oldest = loop.time()
        self._pending.append((apply, Write(item, contextvars.copy_context(), future)))
        self._arrived.set()
        if len(self._pending) >= self.max_rows:
            self._full.set()
        return future

    async def write(self, apply: Apply, item: Any) -> Any:
        """Submit one write and wait until it is committed; returns what ``apply`` said about it."""
        return await asyncio.shield(self.submit(apply, item))

    async def write_many(self, apply: Apply, items: Sequence[Any]) -> list[Any]:
        futures = [self.submit(apply, item) for item in items]
        return list(await asyncio.shield(asyncio.gather(*futures)))

    async def run(self, unit: Unit) -> Any:
        """Apply ``unit(session)`` in the next group's transaction; its result once committed."""
        return await self.write(_units, unit)

    # -- the writer task -------------------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                if not self._pending:
                    if self._stopping:
                        return
                    self._arrived.clear()
                    await self._arrived.wait()
                    continue
                wait = self._oldest + self.window_s - loop.time()
                if wait > 0 and len(self._pending) < self.max_rows and not self._stopping:
                    self._full.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._full.wait(), wait)
                group, self._pending = self._pending[: self.max_rows], self._pending[self.max_rows :]
                if self._pending:  # more than one group's worth: the rest is due at once
                    self._oldest = loop.time() - self.window_s
                    if len(self._pending) < self.max_rows:
                        self._full.clear()
                await self._commit(group)
        except BaseException as exc:
            # Never leave a submitter waiting forever: what was not committed fails.
            for _, write in self._pending:
                if not write.future.done():
                    write.future.set_exception(WriterStopped(f"{self.name} stopped: {type(exc).__name__}"))
            self._pending.clear()
            raise

    async def _commit(self, group: list[tuple[Apply, Write[Any]]]) -> None:
        try:
            results = await self._apply(group)
        except asyncio.CancelledError:
            for _, write in group:
                if not write.future.done():
                    write.future.set_exception(WriterStopped(f"{self.name} cancelled"))
            raise
        except Exception as exc:
            if len(group) == 1:
                _fail(group[0][1], exc)
                return
            self.split += 1
            self.metrics.split()
            log.warning("group commit failed; committing its writes one at a time", writer=self.name,
                        writes=len(group), error=f"{type(exc).__name__}: {exc}"[:500])
            for one in group:
                try:
                    (result,) = await self._apply([one])
                except asyncio.CancelledError:
                    raise
                except Exception as alone:
                    _fail(one[1], alone)
                else:
                    _resolve(one[1], result)
            return
        for (_, write), result in zip(group, results, strict=True):
            _resolve(write, result)

    async def _apply(self, group: list[tuple[Apply, Write[Any]]]) -> list[Any]:
        by_kind: dict[Apply, list[int]] = {}
        for index, (apply, _) in enumerate(group):
            by_kind.setdefault(apply, []).append(index)
        results: list[Any] = [None] * len(group)
        # A group's statements are batch-sized and indexed: on SQLite they run on this thread.
        with on_the_loop():
            async with self.db.transaction() as session:
                for n, (apply, indexes) in enumerate(by_kind.items()):
                    if n:
                        # Each kind reads what the kinds before it wrote, whether through the ORM or Core.
                        await session.flush()
                        session.expire_all()
                    outcome = await apply(session, [group[i][1] for i in indexes])
                    for i, result in zip(indexes, outcome, strict=True):
                        results[i] = result
        self.commits += 1
        self.rows += len(group)
        self.metrics.committed(len(group))
        return results


async def _units(session: AsyncSession, writes: Sequence[Write[Unit]]) -> list[Any]:
    return [await write.run_async(write.item, session) for write in writes]


def _resolve(write: Write[Any], result: Any) -> None:
    if not write.future.done():
        write.future.set_result(result)


def _fail(write: Write[Any], exc: BaseException) -> None:
    if not write.future.done():
        write.future.set_exception(exc)
    else:  # nobody waits (cancelled): say so, or the failure would go unseen
        log.error("a write nobody waited for failed", error=f"{type(exc).__name__}: {exc}"[:500])
