"""The transactional outbox: events written with the state change, relayed to Kafka after commit."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Integer, LargeBinary, String, delete, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from shared.bus.producer import EventProducer
from shared.db.database import Base, Database
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


def add_to_outbox(session: AsyncSession, topic: str, event: CloudEvent) -> None:
    """Stage ``event`` for ``topic`` in the caller's transaction, with the current trace context."""
    event = stamped(event)
    session.add(
        OutboxRecord(
            topic=topic,
            key=event.subject,
            value=encode_event(event),
            event_id=event.id,
            event_type=event.type,
            created_at=utcnow(),
        )
    )


class OutboxRelay:
    """Background publisher: reads committed outbox rows in id order, publishes, deletes them.

    A row is deleted only after the broker acknowledged it, so a crash re-publishes at most the
    last batch; consumers dedupe by event id. Woken after each commit, and polls as a safety net.
    """

    def __init__(
        self, db: Database, producer: EventProducer, batch_size: int = 500, poll_interval: float = 0.25
    ) -> None:
        self.db, self.producer = db, producer
        self.batch_size, self.poll_interval = batch_size, poll_interval
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.published = 0
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
                moved = await self.relay_once()
                backoff = self.poll_interval
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

    async def relay_once(self) -> int:
        """Publish one batch of committed rows; returns how many were published."""
        if self.db.is_postgres:
            return await self._relay_locked()
        # SQLite: one relay per process and one process per file. Read without the write lock,
        # publish, then delete in a short write transaction, so writers never wait on broker acks.
        async with self.db.read_sessions() as session:
            rows = (
                await session.execute(select(OutboxRecord).order_by(OutboxRecord.id).limit(self.batch_size))
            ).scalars().all()
        if not rows:
            return 0
        await self._publish(rows)
        async with self.db.sessions() as session, session.begin():
            await session.execute(delete(OutboxRecord).where(OutboxRecord.id.in_([r.id for r in rows])))
        self.published += len(rows)
        return len(rows)

    async def _relay_locked(self) -> int:
        # PostgreSQL: an advisory lock makes one relay active per database, so key order holds
        # across instances; the rows are deleted in the transaction that read them.
        async with self.db.sessions() as session, session.begin():
            locked = await session.scalar(text(f"SELECT pg_try_advisory_xact_lock({_RELAY_LOCK_ID})"))
            if not locked:
                return 0
            rows = (
                await session.execute(select(OutboxRecord).order_by(OutboxRecord.id).limit(self.batch_size))
            ).scalars().all()
            if not rows:
                return 0
            await self._publish(rows)
            await session.execute(delete(OutboxRecord).where(OutboxRecord.id.in_([r.id for r in rows])))
        self.published += len(rows)
        return len(rows)

    async def _publish(self, rows: Sequence[OutboxRecord]) -> None:
        futures = [
            await self.producer.send_raw(row.topic, row.value, row.key.encode() if row.key else None)
            for row in rows
        ]
        await asyncio.gather(*futures)
