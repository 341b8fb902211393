"""How many times a consumer group started on a partition's records without finishing them.

One row per (group, topic, partition): the first offset of the records in hand, the attempts at
them as a batch and the attempts at that first record alone. The consumer runner writes it before
handling a batch (one small transaction per fetch, for all its partitions), so the count survives a crash or a
SIGKILL: after a restart it sees that the same records were already attempted, handles them one
at a time to find the one that crashes it, and dead-letters that one on its next attempt (see
``ConsumerRunner``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Integer, String, delete, select, tuple_
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.database import Base, Database
from shared.events.envelope import utcnow


class ConsumerAttempt(Base):
    __tablename__ = "consumer_attempts"

    group_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    topic: Mapped[str] = mapped_column(String(250), primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    first_offset: Mapped[int] = mapped_column(BigInteger)
    #: Attempts at the records from ``first_offset`` as a batch, and at that record alone.
    attempts: Mapped[int] = mapped_column(Integer)
    alone_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ConsumerAttempts:
    """The runner's ``CrashLog`` on the service database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def begin(self, group: str, topic: str, partition: int, offset: int, alone: bool = False) -> int:
        """Record an attempt at the records from ``offset`` (``alone``: at that record by itself).

        Returns, for a batch, its attempts so far including this one plus the attempts at its first
        record alone (1 = nothing crashed here before); for a record alone, its attempts alone.
        """
        async with self.db.sessions() as session, session.begin():
            row = await session.get(ConsumerAttempt, (group, topic, partition), with_for_update=True)
            if row is None:
                row = ConsumerAttempt(group_id=group, topic=topic, partition=partition, first_offset=offset,
                                      attempts=0, alone_attempts=0)
                session.add(row)
            elif row.first_offset != offset:
                row.first_offset, row.attempts, row.alone_attempts = offset, 0, 0
            row.updated_at = utcnow()
            if alone:
                row.alone_attempts += 1
                return row.alone_attempts
            row.attempts += 1
            return row.attempts + row.alone_attempts

    async def begin_batch(self, group: str, firsts: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
        """:meth:`begin` for every partition of one fetch (``(topic, partition) → first offset``), in one
        transaction: one read of their rows, one commit, instead of a write transaction per partition."""
        if not firsts:
            return {}
        counts: dict[tuple[str, int], int] = {}
        async with self.db.sessions() as session, session.begin():
            stmt = (select(ConsumerAttempt).where(
                ConsumerAttempt.group_id == group,
                tuple_(ConsumerAttempt.topic, ConsumerAttempt.partition).in_(list(firsts)),
            ).order_by(ConsumerAttempt.topic, ConsumerAttempt.partition).with_for_update())
            rows = {(r.topic, r.partition): r for r in (await session.execute(stmt)).scalars()}
            now = utcnow()
            for (topic, partition), offset in sorted(firsts.items()):
                row = rows.get((topic, partition))
                if row is None:
                    row = ConsumerAttempt(group_id=group, topic=topic, partition=partition, first_offset=offset,
                                          attempts=0, alone_attempts=0)
                    session.add(row)
                elif row.first_offset != offset:
                    row.first_offset, row.attempts, row.alone_attempts = offset, 0, 0
                row.updated_at = now
                row.attempts += 1
                counts[(topic, partition)] = row.attempts + row.alone_attempts
        return counts

    async def forget(self, group: str, partitions: list[tuple[str, int]]) -> None:
        if not partitions:
            return
        async with self.db.sessions() as session, session.begin():
            await session.execute(delete(ConsumerAttempt).where(
                ConsumerAttempt.group_id == group,
                tuple_(ConsumerAttempt.topic, ConsumerAttempt.partition).in_(partitions),
            ))

    async def count(self, group: str, topic: str, partition: int) -> int:
        async with self.db.sessions() as session:
            row = await session.scalar(select(ConsumerAttempt.attempts + ConsumerAttempt.alone_attempts).where(
                ConsumerAttempt.group_id == group, ConsumerAttempt.topic == topic,
                ConsumerAttempt.partition == partition))
            return int(row or 0)
