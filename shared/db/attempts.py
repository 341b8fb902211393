"""How many times a consumer group started on a partition's records without finishing them.

One row per (group on one cluster, topic, partition): the first offset of the records in hand, the attempts at
them as a batch and the attempts at that first record alone. The consumer runner writes it before
handling a batch (one statement in one small transaction per fetch, for all its partitions), so the
count survives a crash or a SIGKILL: after a restart it sees that the same records were already
attempted, handles them one at a time to find the one that crashes it, and dead-letters that one on
its next attempt (see ``ConsumerRunner``).
"""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any, cast

from sqlalchemy import BigInteger, DateTime, Integer, String, Table, case, delete, func, or_, select, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
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


@functools.cache
def _upsert(postgres: bool, alone: bool) -> Any:
    """The attempt upsert, built once per dialect and kind: every fetch of every consumer runs it."""
    table = cast(Table, ConsumerAttempt.__table__)
    insert = pg_insert if postgres else sqlite_insert
    stmt = insert(table)
    same = table.c.first_offset == stmt.excluded.first_offset
    counted = table.c.alone_attempts if alone else table.c.attempts
    kept = table.c.attempts if alone else table.c.alone_attempts
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.group_id, table.c.topic, table.c.partition],
        set_={
            "first_offset": stmt.excluded.first_offset,
            counted.name: case((same, counted + 1), else_=1),
            kept.name: case((same, kept), else_=0),
            "updated_at": stmt.excluded.updated_at,
        },
    )
    result = table.c.alone_attempts if alone else table.c.attempts + table.c.alone_attempts
    return stmt.returning(table.c.topic, table.c.partition, result)


def _of_group(group: str) -> Any:
    """The rows of ``group`` on any cluster (``group@cluster``, see ``shared.bus.consumer.crash_key``)."""
    return or_(ConsumerAttempt.group_id == group, ConsumerAttempt.group_id.startswith(f"{group}@", autoescape=True))


class ConsumerAttempts:
    """The runner's ``CrashLog`` on the service database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def begin(self, group: str, topic: str, partition: int, offset: int, alone: bool = False) -> int:
        """Record an attempt at the records from ``offset`` (``alone``: at that record by itself).

        Returns, for a batch, its attempts so far including this one plus the attempts at its first
        record alone (1 = nothing crashed here before); for a record alone, its attempts alone.
        """
        return (await self._record(group, {(topic, partition): offset}, alone))[(topic, partition)]

    async def begin_batch(self, group: str, firsts: dict[tuple[str, int], int]) -> dict[tuple[str, int], int]:
        """:meth:`begin` for every partition of one fetch (``(topic, partition) → first offset``), in one
        transaction: one statement, one commit, instead of a write transaction per partition."""
        if not firsts:
            return {}
        return await self._record(group, firsts, alone=False)

    async def _record(self, group: str, firsts: dict[tuple[str, int], int], alone: bool) -> dict[tuple[str, int], int]:
        """One upsert (SQLAlchemy Core, in partition order) on the write connection: a row that is at
        the same first offset counts one attempt more, any other starts again at this attempt."""
        now = utcnow()
        rows = [{"group_id": group, "topic": topic, "partition": partition, "first_offset": offset,
                 "attempts": 0 if alone else 1, "alone_attempts": 1 if alone else 0, "updated_at": now}
                for (topic, partition), offset in sorted(firsts.items())]
        async with self.db.engine.begin() as conn:
            returned = (await conn.execute(_upsert(self.db.is_postgres, alone), rows)).all()
        return {(topic, partition): int(count) for topic, partition, count in returned}

    async def forget(self, group: str, partitions: list[tuple[str, int]]) -> None:
        if not partitions:
            return
        async with self.db.sessions() as session, session.begin():
            await session.execute(delete(ConsumerAttempt).where(
                ConsumerAttempt.group_id == group,
                tuple_(ConsumerAttempt.topic, ConsumerAttempt.partition).in_(partitions),
            ))

    async def keep_only(self, group: str, key: str) -> None:
        """Delete what ``group`` counted under any key but ``key``: on another cluster (a broker restarted
        empty numbers its records from 0 again, so the old counts would point at new records), or
        before counts were kept per cluster."""
        async with self.db.sessions() as session, session.begin():
            await session.execute(delete(ConsumerAttempt).where(_of_group(group), ConsumerAttempt.group_id != key))

    async def count(self, group: str, topic: str, partition: int) -> int:
        """The attempts ``group`` counted at a partition, on whichever cluster it runs on (ops, tests)."""
        async with self.db.sessions() as session:
            counted = func.sum(ConsumerAttempt.attempts + ConsumerAttempt.alone_attempts)
            row = await session.scalar(select(counted).where(
                _of_group(group), ConsumerAttempt.topic == topic, ConsumerAttempt.partition == partition))
            return int(row or 0)
