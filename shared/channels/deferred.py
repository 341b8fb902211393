"""The durable retry path: sends deferred out of their consumer batch, resumed from the send log.

A send retries inside its consumer batch for at most ``sending.inline_retry_s``
(:meth:`~shared.channels.dispatch.attempts.SendAttempts.send`). One whose next retry is due later — a
provider answering 429/503 for minutes, a sender paused by a long ``Retry-After`` — is recorded as
``retrying`` with its attempt count, ``next_attempt_at`` and the composed request (``resume``), in
the same group commit as the batch's other results and inbox marks. The batch completes, its offsets
commit, and the partition's other debtors go on; the consumer never nears ``max_poll_interval_ms``.

:class:`DeferredSends` (one per channel service process) picks due rows up every ``retry_poll_s``:

* **One holder per row.** A row is claimed with a conditional update (``retrying`` and due →
  ``sending``), committed before any request, so of several replicas exactly one resumes it; on
  SQLite and PostgreSQL alike.
* **send_before first.** Each attempt checks the dispatch's deadline and ``send_before`` (less the
  adapter's lead time) as the consumer does; out of time, the send ends ``expired`` (or ``failed``:
  ``deadline``), unsent.
* **At most once.** Only rows whose every attempt was refused unprocessed are ever ``retrying``. A
  resumed attempt that may have been processed ends ``unknown``, never retried. A holder that dies
  mid-request leaves its claim ``sending``: past a lease longer than one holding can last (the inline
  bound plus one request's timeouts), the row is reported ``unknown``, never resent.
* **Survives restarts.** Everything is in the send log; a process stopping between retries puts its
  claims back as due.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select, update

from shared.bus import event_scope
from shared.channels.dispatch import DispatchHandler
from shared.channels.ports import RETRYING, load_resume
from shared.channels.sendlog import SEND_LOG, SendLogRows
from shared.db import OutboxBatch
from shared.events import utcnow
from shared.logging import get_logger

log = get_logger(__name__)


class DeferredSends:
    """Resumes ``retrying`` send-log rows when they are due (module docstring)."""

    def __init__(self, handler: DispatchHandler, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.handler, self.db, self.sending, self.clock = handler, handler.db, handler.sending, clock
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._active: dict[str, asyncio.Task[None]] = {}
        #: Rows resumed (claimed), and claims found abandoned and reported unknown (for metrics and tests).
        self.resumed = 0
        self.abandoned = 0

    @property
    def lease(self) -> timedelta:
        """How long a claim may be held: the bound on waiting and retrying, one request's timeouts
        and a pass of slack, twice over (a row older than this in ``sending`` lost its holder)."""
        s = self.sending
        return timedelta(seconds=2 * (s.inline_retry_s + s.connect_timeout_s + s.request_timeout_s + s.retry_poll_s))

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="deferred-sends")

    async def stop(self) -> None:
        """Stop resuming; sends waiting between retries put their rows back as due."""
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._active:
            await asyncio.gather(*list(self._active.values()), return_exceptions=True)

    async def ping(self) -> None:
        if self._task is not None and self._task.done():
            raise RuntimeError("durable retry path stopped")

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.resume_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # database hiccup: try again next pass
                log.warning("retry pass failed", error=f"{type(exc).__name__}: {exc}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.sending.retry_poll_s)

    async def resume_once(self) -> int:
        """One pass: report abandoned claims, start resuming the due rows; returns how many were started."""
        await self._abandoned()
        now = self.clock()
        stmt = (
            select(SEND_LOG.c.dispatch_id)
            .where(SEND_LOG.c.state == RETRYING, SEND_LOG.c.next_attempt_at <= now)
            .order_by(SEND_LOG.c.next_attempt_at)
            .limit(self.sending.retry_batch)
        )
        async with self.db.read_sessions() as session:
            due = [d for d in (await session.execute(stmt)).scalars() if d not in self._active]
        for dispatch_id in due:
            self._active[dispatch_id] = asyncio.create_task(self._resume(dispatch_id), name=f"resume-{dispatch_id}")
        return len(due)

    async def _resume(self, dispatch_id: str) -> None:
        try:
            await self._resume_claimed(dispatch_id)
        except Exception as exc:
            log.warning("resuming a deferred send failed", dispatch_id=dispatch_id,
                        error=f"{type(exc).__name__}: {exc}")
        finally:
            self._active.pop(dispatch_id, None)

    async def _resume_claimed(self, dispatch_id: str) -> None:
        handler = self.handler
        async with handler._slots:  # counts against max_in_flight like the consumer's sends
            if self._stopping.is_set():
                return
            claimed = await self._claim(dispatch_id)
            if claimed is None:
                return  # another replica took it, or it ended meanwhile
            attempts, record = claimed
            event, message = load_resume(record)
            self.resumed += 1
            with event_scope(event):
                until = asyncio.get_running_loop().time() + self.sending.inline_retry_s
                # An exception (a cancelled request among them) leaves the claim ``sending``: the
                # request may have left, so past the lease the row is reported unknown, never resent.
                result = await handler.attempts.send(event.data, message, attempts=attempts, until=until)
                if result.kind == "stopped":
                    await self._give_back(dispatch_id)
                    return
                handler.results[result.kind] = handler.results.get(result.kind, 0) + 1
                log.info("deferred send resumed", dispatch_id=dispatch_id, result=result.kind, attempts=result.attempts)
                await handler.writer.submit(handler.recorder.record, (event, result))

    async def _claim(self, dispatch_id: str) -> tuple[int, str] | None:
        """``retrying`` and due → ``sending``, committed; the row's attempts and request, or None if
        it was not ours to take."""
        now = self.clock()
        stmt = (
            update(SEND_LOG)
            .where(SEND_LOG.c.dispatch_id == dispatch_id, SEND_LOG.c.state == RETRYING,
                   SEND_LOG.c.next_attempt_at <= now)
            .values(state="sending", updated_at=now)
            .returning(SEND_LOG.c.attempts, SEND_LOG.c.resume)
        )
        async with self.db.transaction() as session:
            row = (await session.execute(stmt)).first()
        if row is None or row.resume is None:
            return None
        return int(row.attempts), str(row.resume)

    async def _give_back(self, dispatch_id: str) -> None:
        """A claim whose attempts were all refused unprocessed goes back to ``retrying``, due now."""
        now = self.clock()
        stmt = (
            update(SEND_LOG)
            .where(SEND_LOG.c.dispatch_id == dispatch_id, SEND_LOG.c.state == "sending",
                   SEND_LOG.c.next_attempt_at.is_not(None))
            .values(state=RETRYING, next_attempt_at=now, updated_at=now)
        )
        async with self.db.transaction() as session:
            await session.execute(stmt)

    async def _abandoned(self) -> None:
        """Claims of the retry path held past the lease (their holder died mid-request): ``unknown``."""
        cutoff = self.clock() - self.lease
        async with self.db.transaction() as session:
            rows = await SendLogRows.select(
                session, SEND_LOG.c.state == "sending", SEND_LOG.c.next_attempt_at.is_not(None),
                SEND_LOG.c.updated_at < cutoff,
            )
            if not rows.rows:
                return
            outbox = OutboxBatch()
            for row in rows:
                row.state, row.next_attempt_at, row.resume = "unknown", None, None
                self.handler.recorder.advance(
                    outbox, row, "unknown", error_message="the retry path lost its claim mid-request"
                )
                log.warning("deferred send lost its holder; reported unknown", dispatch_id=row.dispatch_id)
                self.abandoned += 1
            await rows.save(session)
            await outbox.insert(session)
