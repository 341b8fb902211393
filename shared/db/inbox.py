"""The inbox: which events a consumer has already applied, recorded in the same transaction."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from datetime import datetime
from typing import Any, cast

from sqlalchemy import DateTime, Index, String, Table
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from shared.db.database import Base
from shared.events.envelope import utcnow


class InboxRecord(Base):
    __tablename__ = "inbox"
    __table_args__ = (Index("ix_inbox_processed_at", "processed_at"),)

    consumer: Mapped[str] = mapped_column(String(100), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


async def first_time(session: AsyncSession, consumer: str, event_id: str) -> bool:
    """Mark ``event_id`` processed by ``consumer``; False if it already was (a redelivery).

    Call inside the transaction that applies the event's effects, so both commit or neither does.
    """
    values = {"consumer": consumer, "event_id": event_id, "processed_at": utcnow()}
    result = await session.execute(_mark(_dialect(session)), values)
    return bool(getattr(result, "rowcount", 0) == 1)


async def first_times(session: AsyncSession, marks: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """Set-based :func:`first_time`: mark every ``(consumer, event_id)``; those not marked before.

    One ``INSERT … ON CONFLICT DO NOTHING RETURNING`` for a whole consumer batch, in sorted order so
    two transactions marking overlapping events wait for each other instead of deadlocking. The rows
    go as parameters of one compiled statement (SQLAlchemy's "insertmanyvalues"), not as a VALUES
    list built into it: a statement of its own for every batch size was compiled anew each time,
    several times the cost of running it.
    """
    wanted = sorted(set(marks))
    if not wanted:
        return set()
    now = utcnow()
    rows = [{"consumer": c, "event_id": e, "processed_at": now} for c, e in wanted]
    return {(c, e) for c, e in (await session.execute(_mark_returning(_dialect(session)), rows)).all()}


async def mark_processed(session: AsyncSession, consumer: str, event_ids: Iterable[str]) -> None:
    """:func:`first_time` for many events in one statement (a batch's inbox marks)."""
    now = utcnow()
    values = [{"consumer": consumer, "event_id": event_id, "processed_at": now}
              for event_id in dict.fromkeys(event_ids)]
    if not values:
        return
    await session.execute(_mark(_dialect(session)), values)  # executemany: compiled once, multi-row VALUES


def _dialect(session: AsyncSession) -> str:
    return session.bind.dialect.name if session.bind is not None else "sqlite"


# The marks are built once per dialect and run with parameters: every batch marks its events, and
# building the statement anew cost more than running it (docs/benchmarks.md, tenth round).
@functools.cache
def _mark(dialect: str) -> Any:
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    return insert(cast(Table, InboxRecord.__table__)).on_conflict_do_nothing(index_elements=["consumer", "event_id"])


@functools.cache
def _mark_returning(dialect: str) -> Any:
    return _mark(dialect).returning(InboxRecord.consumer, InboxRecord.event_id)
