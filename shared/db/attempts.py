"""How many times a consumer group started on a partition's records without finishing them.

One row per (group, topic, partition): the first offset of the records in hand and the attempts
at them. The consumer runner writes it before handling a batch (one small write per partition
and batch), so the count survives a crash or a SIGKILL: after a restart it sees that the same
records were already attempted and hunts down the one that crashes it (see ``ConsumerRunner``).
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
    attempts: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ConsumerAttempts:
    """The runner's ``CrashLog`` on the service database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def begin(self, group: str, topic: str, partition: int, offset: int) -> int:
        async with self.db.sessions() as session, session.begin():
            row = await session.get(ConsumerAttempt, (group, topic, partition), with_for_update=True)
            if row is None:
                session.add(ConsumerAttempt(group_id=group, topic=topic, partition=partition, first_offset=offset,
                                            attempts=1, updated_at=utcnow()))
                return 1
            row.attempts = row.attempts + 1 if row.first_offset == offset else 1
            row.first_offset, row.updated_at = offset, utcnow()
            return row.attempts

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
            row = await session.scalar(select(ConsumerAttempt.attempts).where(
                ConsumerAttempt.group_id == group, ConsumerAttempt.topic == topic,
                ConsumerAttempt.partition == partition))
            return int(row or 0)
