"""The transactional outbox: events written with the state change, relayed to Kafka after commit.

The relay never blocks behind one row: a row the broker refuses ``max_publish_attempts`` times
(too large, a topic that does not exist, …) is *parked* — kept with its error, counted, listed and
replayable through the ops API (:mod:`shared.db.parked`) — and the relay moves on. Per-key order
holds: while a debtor's row is failing, that debtor's later rows wait (and are parked with it),
other debtors' rows keep flowing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    DateTime,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    bindparam,
    delete,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from shared.bus.producer import BrokerChanged, EventProducer
from shared.db.database import Base, Database
from shared.db.sqlite_cursor import on_the_loop
from shared.events import CloudEvent, encode_event
from shared.events.envelope import utcnow
from shared.logging import get_logger
from shared.tracing import stamped

log = get_logger(__name__)
_RELAY_LOCK_ID = 0x0CADE0C1A  # pg advisory lock: one active relay per database keeps key order


class OutboxRecord(Base):
    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    topic: Mapped[str] = mapped_column(String(250))
    key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)
    event_id: Mapped[str] = mapped_column(String(200))
    event_type: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    #: Failed publish attempts; at ``max_publish_attempts`` the row is parked (``parked_at`` set).
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    parked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


@dataclass
class _Outcome:
    """What one relay pass did to its rows."""

    published: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)
    #: Rows held back behind a failing or parked row of the same key: id → the blocking row's id.
    held: dict[int, int] = field(default_factory=dict)


def outbox_values(topic: str, event: CloudEvent) -> dict[str, Any]:
    """The outbox row of ``event`` as column values, stamped with the current trace context now: for
    writers that stage many events and insert them in one statement (``insert(OutboxRecord)``)."""
    event = stamped(event)
    return {"topic": topic, "key": event.subject, "value": encode_event(event), "event_id": event.id,
            "event_type": event.type, "created_at": utcnow(), "attempts": 0, "last_error": None, "parked_at": None}


class OutboxBatch:
    """Outbox rows staged for one bulk insert (SQLAlchemy Core) at the end of a batch's transaction.

    Hot paths stage here instead of adding ORM objects: hundreds of events become one statement.
    Each row takes its trace context when it is staged, as with :func:`add_to_outbox`.
    """

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, topic: str, event: CloudEvent) -> None:
        self.rows.append(outbox_values(topic, event))

    def extend(self, other: OutboxBatch) -> None:
        self.rows.extend(other.rows)

    def __len__(self) -> int:
        return len(self.rows)

    async def insert(self, session: AsyncSession) -> int:
        """Insert the staged rows in the caller's transaction (in staging order); returns how many."""
        if not self.rows:
            return 0
        await session.execute(insert(cast(Table, OutboxRecord.__table__)), self.rows)  # Core executemany, compiled once
        count, self.rows = len(self.rows), []
        return count


#: A committed row the relay read (its id, topic, key, value, event_id and attempts): a Core row.
Pending = Row[*tuple[Any, ...]]

#: Where an event is staged: the caller's session (one ORM row) or a batch (one bulk insert later).
Outbox = AsyncSession | OutboxBatch


def add_to_outbox(outbox: Outbox, topic: str, event: CloudEvent) -> None:
    """Stage ``event`` for ``topic`` in the caller's transaction, with the current trace context."""
    if isinstance(outbox, OutboxBatch):
        outbox.add(topic, event)
        return
    outbox.add(OutboxRecord(**outbox_values(topic, event)))


_OUTBOX = cast(Table, OutboxRecord.__table__)
# Built once, run with parameters: a busy service runs a relay pass every few milliseconds, and building
# a statement (then SQLAlchemy's cache-key walk over it) costs more than running these small ones.
_PENDING = (select(_OUTBOX.c.id, _OUTBOX.c.topic, _OUTBOX.c.key, _OUTBOX.c.value, _OUTBOX.c.event_id,
                   _OUTBOX.c.event_type, _OUTBOX.c.attempts)
            .where(_OUTBOX.c.parked_at.is_(None)).order_by(_OUTBOX.c.id).limit(bindparam("limit")))
_DELETE = delete(_OUTBOX).where(_OUTBOX.c.id.in_(bindparam("ids", expanding=True)))


class OutboxRelay:
    """Background publisher: reads committed outbox rows in id order, publishes, deletes them.

    A row is deleted only after the broker acknowledged it, so a crash re-publishes at most the
    last batch; consumers dedupe by event id. Woken after each commit, and polls as a safety net.
    Once woken it lingers ``linger_s`` (5 ms) so the commits of those few milliseconds share one pass:
    a busy channel service commits hundreds of times a second, and a pass per commit (a read, a
    publish, a delete, each a few rows) cost more than the commits themselves.
    """

    def __init__(
        self, db: Database, producer: EventProducer, batch_size: int = 500, poll_interval: float = 0.25,
        max_publish_attempts: int = 5, metrics: Any = None, linger_s: float = 0.005,
    ) -> None:
        self.db, self.producer = db, producer
        self.batch_size, self.poll_interval, self.linger_s = batch_size, poll_interval, linger_s
        self.max_publish_attempts = max_publish_attempts
        #: Rows parked by this relay since start (also ``outbox_parked_total`` when ``metrics`` is given).
        self.parked = 0
        self._parked_counter: Any = None
        if metrics is not None:
            from prometheus_client import Counter

            self._parked_counter = Counter("outbox_parked", "Outbox rows parked after failing to publish",
                                           registry=metrics)
        #: SQLite: whether the file holds a parked row (None: not read yet). Only this relay parks rows
        #: there (one relay per file) and nothing else adds one, so once a read found none, no pass
        #: needs to look for parked keys until this relay parks a row.
        self._any_parked: bool | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.published = 0
        self.failures = 0
        db.on_commit(self.wake)

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox-relay")

    async def stop(self) -> None:
        """Publish what is already committed, then stop."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=15)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task

    async def _run(self) -> None:
        backoff = self.poll_interval
        while True:
            try:
                failures_before = self.failures
                moved = await self.relay_once()
                if self.failures == failures_before:
                    backoff = self.poll_interval
                else:  # some rows failed: retry them after a growing pause, the others already moved
                    backoff = min(backoff * 2, 5.0)
                    moved = min(moved, self.batch_size - 1)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # broker or database hiccup: keep the rows, try again later
                log.warning("outbox relay failed; retrying", error=f"{type(exc).__name__}: {exc}")
                moved = 0
                backoff = min(backoff * 2, 5.0)
            if self._stopping and moved == 0:
                return
            if moved >= self.batch_size:
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=backoff)
            if self._wake.is_set() and self.linger_s > 0 and not self._stopping:
                await asyncio.sleep(self.linger_s)

    async def relay_once(self) -> int:
        """Publish one batch of committed rows; returns how many were published."""
        if self.db.is_postgres:
            return await self._relay_locked()
        # SQLite: one relay per process and one process per file. Read without the write lock,
        # publish, then settle in a short write transaction, so writers never wait on broker acks.
        # A pass is a few indexed statements: on this thread (sqlite_cursor.on_the_loop).
        with on_the_loop():
            async with self.db.read_sessions() as session:
                rows = await self._pending(session)
                if not rows:
                    return 0
                if self._any_parked is None:
                    self._any_parked = await session.scalar(
                        select(OutboxRecord.id).where(OutboxRecord.parked_at.is_not(None)).limit(1)) is not None
                held = await self._parked_keys(session, rows) if self._any_parked else {}
            outcome = await self._publish(rows, held)
            async with self.db.sessions() as session, session.begin():
                await self._settle(session, rows, outcome)
        return len(outcome.published)

    async def _relay_locked(self) -> int:
        # PostgreSQL: an advisory lock makes one relay active per database, so key order holds
        # across instances; the rows are settled in the transaction that read them.
        async with self.db.sessions() as session, session.begin():
            locked = await session.scalar(text(f"SELECT pg_try_advisory_xact_lock({_RELAY_LOCK_ID})"))
            if not locked:
                return 0
            rows = await self._pending(session)
            if not rows:
                return 0
            outcome = await self._publish(rows, await self._parked_keys(session, rows))
            await self._settle(session, rows, outcome)
        return len(outcome.published)

    async def _pending(self, session: AsyncSession) -> Sequence[Pending]:
        # Core rows, not ORM objects: nothing of them is changed through the session.
        return (await session.execute(_PENDING, {"limit": self.batch_size})).all()

    async def _parked_keys(self, session: AsyncSession, rows: Sequence[Pending]) -> dict[str, int]:
        """Keys of ``rows`` that already have a parked row (key → that row's id): their rows wait."""
        keys = {r.key for r in rows if r.key is not None}
        if not keys:
            return {}
        stmt = (select(OutboxRecord.key, OutboxRecord.id)
                .where(OutboxRecord.parked_at.is_not(None), OutboxRecord.key.in_(keys)))
        return {key: row_id for key, row_id in (await session.execute(stmt)).all() if key is not None}

    async def _publish(self, rows: Sequence[Pending], blocked: dict[str, int]) -> _Outcome:
        """Publish ``rows``; raises (every row kept, no attempt counted) when the broker is not the
        cluster the producer started on or lost our topics (``EventProducer.confirm``), before the
        sends and again after the acks: a fresh, empty broker acknowledges records it then does not
        have. A row whose topic the broker lacks fails without being sent."""
        topics = {row.topic for row in rows}
        missing = await self.producer.confirm(topics)
        outcome = _Outcome()
        blocked = dict(blocked)
        queued: list[tuple[Pending, asyncio.Future[Any]]] = []
        for row in rows:
            if row.key is not None and row.key in blocked:
                outcome.held[row.id] = blocked[row.key]
                continue
            if row.topic in missing:
                outcome.failed[row.id] = f"UnknownTopicOrPartitionError: the broker has no topic {row.topic}"
                if row.key is not None:
                    blocked[row.key] = row.id
                continue
            try:
                # the ``ce_type`` header, as ``EventProducer.publish`` writes it: consumers route on it unread
                future = await self.producer.send_raw(row.topic, row.value, row.key.encode() if row.key else None,
                                                      headers=[("ce_type", row.event_type.encode())])
            except Exception as exc:  # refused before it left (e.g. larger than the producer's limit)
                outcome.failed[row.id] = _describe(exc)
                if row.key is not None:
                    blocked[row.key] = row.id
                continue
            queued.append((row, future))
        results = await asyncio.gather(*(f for _, f in queued), return_exceptions=True)
        for (row, _), result in zip(queued, results, strict=True):
            if isinstance(result, BaseException):
                outcome.failed[row.id] = _describe(result)
            else:
                outcome.published.append(row.id)
        if outcome.published:
            gone = await self.producer.confirm(topics) - missing
            if gone:
                raise BrokerChanged(f"the broker lost topic {sorted(gone)[0]} while the relay published to it")
        return outcome

    async def _settle(self, session: AsyncSession, rows: Sequence[Pending], outcome: _Outcome) -> None:
        if outcome.published:
            await session.execute(_DELETE, {"ids": outcome.published})
            self.published += len(outcome.published)
        now = utcnow()
        by_id = {r.id: r for r in rows}
        parked_now: dict[int, str] = {}
        for row_id, error in outcome.failed.items():
            row = by_id[row_id]
            attempts = row.attempts + 1
            self.failures += 1
            parked = attempts >= self.max_publish_attempts
            await session.execute(update(OutboxRecord).where(OutboxRecord.id == row_id).values(
                attempts=attempts, last_error=error[:4000], parked_at=now if parked else None))
            if parked:
                parked_now[row_id] = error
                log.error("outbox row parked after failing to publish", outbox_id=row_id, topic=row.topic,
                          event_id=row.event_id, attempts=attempts, error=error[:500])
            else:
                log.warning("outbox row failed to publish; will retry", outbox_id=row_id, topic=row.topic,
                            attempts=attempts, error=error[:500])
        for row_id, blocker in outcome.held.items():
            # Behind a parked row of the same key: parked with it, to keep the debtor's order.
            if blocker in parked_now or by_id.get(blocker) is None:
                await session.execute(update(OutboxRecord).where(OutboxRecord.id == row_id).values(
                    parked_at=now, last_error=f"waiting behind parked outbox row {blocker} of the same key"))
                parked_now[row_id] = "held"
        if parked_now:
            self._any_parked = True
            self.parked += len(parked_now)
            if self._parked_counter is not None:
                self._parked_counter.inc(len(parked_now))


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
