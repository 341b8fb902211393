"""Set-based reads and writes of the send log for the hot paths: Core, not the ORM unit of work
(docs/internals.md: batches).

A batch of dispatches or a group of callbacks reads every row it touches with one locking query and
writes back the rows it changed with one ``executemany`` UPDATE; claims are inserted with one
``executemany`` INSERT. The rows are plain :class:`SendLogEntry` objects (an ORM instance costs far
more to build, and would be flushed behind the caller's back): the outcome helpers read and move them
as they move ORM rows (:class:`~shared.channels.models.SendLogView`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from datetime import datetime
from itertools import starmap
from operator import attrgetter
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.channels.models import SendLogRecord

SEND_LOG = cast(Table, SendLogRecord.__table__)
#: What a dispatch's result or a provider callback may change.
MUTABLE = (
    "state", "status", "provider_id", "error_code", "error_message", "attempts", "updated_at", "next_attempt_at",
    "resume",
)

#: The parameters of ``_UPDATE``: the row's key, then its ``MUTABLE`` columns in that order.
_UPDATE_KEYS = ("key_dispatch_id", *(f"new_{column}" for column in MUTABLE))
_UPDATE = (
    update(SEND_LOG)
    .where(SEND_LOG.c.dispatch_id == bindparam("key_dispatch_id"))
    .values({column: bindparam(f"new_{column}") for column in MUTABLE})
)


@dataclass(slots=True, eq=False)
class SendLogEntry:
    """One ``send_log`` row as plain data (the columns of :class:`~shared.channels.models.SendLogRecord`)."""

    dispatch_id: str
    event_id: str
    request_id: str
    debtor_id: str
    account_id: str
    channel: str
    address: str
    address_key: str
    locale: str
    sender: str
    template_key: str
    template_version: int
    state: str
    status: str | None
    provider_id: str | None
    error_code: str | None
    error_message: str | None
    attempts: int
    created_at: datetime
    updated_at: datetime
    next_attempt_at: datetime | None = None
    resume: str | None = None

    def values(self) -> dict[str, Any]:
        """The row's columns, for an INSERT."""
        return {name: getattr(self, name) for name in COLUMNS}


#: The ``send_log`` columns, in :class:`SendLogEntry` order (a unit test keeps the two the same).
COLUMNS = tuple(f.name for f in fields(SendLogEntry))
# attrgetter reads the fields in C: the per-row snapshot of every batch and group.
_mutable = attrgetter(*MUTABLE)
#: The table's columns in :class:`SendLogEntry` order: a result row is the entry's positional arguments.
_SELECT = select(*(SEND_LOG.c[name] for name in COLUMNS))


class SendLogRows:
    """Rows read (and locked) together; :meth:`save` writes back the ones that changed, in one statement."""

    def __init__(self, rows: Iterable[SendLogEntry]) -> None:
        self.rows = list(rows)
        self._read = dict(zip(map(id, self.rows), map(_mutable, self.rows), strict=True))

    @classmethod
    async def select(cls, session: AsyncSession, *conditions: ColumnElement[bool]) -> SendLogRows:
        """The rows matching ``conditions``, locked in dispatch id order (concurrent writers never deadlock)."""
        return await cls.run(session, cls.locking(*conditions))

    @staticmethod
    def locking(*conditions: ColumnElement[bool]) -> Any:
        """The query of :meth:`select`, to build once and :meth:`run` with parameters."""
        return _SELECT.where(*conditions).order_by(SEND_LOG.c.dispatch_id).with_for_update()

    @classmethod
    async def run(cls, session: AsyncSession, stmt: Any, params: dict[str, Any] | None = None) -> SendLogRows:
        """The rows a :meth:`locking` query returns with ``params``."""
        return cls(starmap(SendLogEntry, (await session.execute(stmt, params or {})).all()))

    @classmethod
    async def by_dispatch(cls, session: AsyncSession, dispatch_ids: Iterable[str]) -> SendLogRows:
        ids = sorted(set(dispatch_ids))
        if not ids:
            return cls([])
        return await cls.run(session, _BY_DISPATCH, {"ids": ids})

    def __iter__(self) -> Iterator[SendLogEntry]:
        return iter(self.rows)

    def _changed(self) -> list[tuple[SendLogEntry, tuple[Any, ...]]]:
        """The changed rows, each with its mutable columns as they are now."""
        read = self._read
        return [(row, now) for row in self.rows if (now := _mutable(row)) != read[id(row)]]

    async def save(self, session: AsyncSession) -> int:
        """Write back the changed rows (one ``executemany``); returns how many."""
        changed = self._changed()
        if not changed:
            return 0
        values = [dict(zip(_UPDATE_KEYS, (row.dispatch_id, *now), strict=True)) for row, now in changed]
        await session.execute(_UPDATE, values)
        for row, now in changed:
            self._read[id(row)] = now
        return len(changed)


#: The hot read by dispatch ids, built once and run with parameters (building one, then SQLAlchemy's
#: cache-key walk over it, costs more than running it for a handful of rows).
_BY_DISPATCH = SendLogRows.locking(SEND_LOG.c.dispatch_id.in_(bindparam("ids", expanding=True)))
