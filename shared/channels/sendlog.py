"""Set-based reads and writes of the send log for the hot paths (DESIGN §12: Core, not the ORM unit of work).

A batch of dispatches or a group of callbacks reads every row it touches with one locking query and
writes back the rows it changed with one ``executemany`` UPDATE. The rows are plain, detached
:class:`~shared.channels.models.SendLogRecord` objects: the outcome helpers read and move them exactly
as they move ORM rows, but nothing is flushed behind the caller's back.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, cast

from sqlalchemy import ColumnElement, Table, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.channels.models import SendLogRecord

SEND_LOG = cast(Table, SendLogRecord.__table__)
#: What a dispatch's result or a provider callback may change.
MUTABLE = ("state", "status", "provider_id", "error_code", "error_message", "attempts", "updated_at")

_UPDATE = (
    update(SEND_LOG)
    .where(SEND_LOG.c.dispatch_id == bindparam("key_dispatch_id"))
    .values({column: bindparam(f"new_{column}") for column in MUTABLE})
)


class SendLogRows:
    """Rows read (and locked) together; :meth:`save` writes back the ones that changed, in one statement."""

    def __init__(self, rows: Iterable[SendLogRecord]) -> None:
        self.rows = list(rows)
        self._read = {id(row): _mutable(row) for row in self.rows}

    @classmethod
    async def select(cls, session: AsyncSession, *conditions: ColumnElement[bool]) -> SendLogRows:
        """The rows matching ``conditions``, locked in dispatch id order (concurrent writers never deadlock)."""
        stmt = select(SEND_LOG).where(*conditions).order_by(SEND_LOG.c.dispatch_id).with_for_update()
        found = (await session.execute(stmt)).mappings().all()
        return cls(SendLogRecord(**dict(values)) for values in found)

    @classmethod
    async def by_dispatch(cls, session: AsyncSession, dispatch_ids: Iterable[str]) -> SendLogRows:
        ids = sorted(set(dispatch_ids))
        if not ids:
            return cls([])
        return await cls.select(session, SEND_LOG.c.dispatch_id.in_(ids))

    def __iter__(self) -> Iterator[SendLogRecord]:
        return iter(self.rows)

    def changed(self) -> list[SendLogRecord]:
        return [row for row in self.rows if _mutable(row) != self._read[id(row)]]

    async def save(self, session: AsyncSession) -> int:
        """Write back the changed rows (one ``executemany``); returns how many."""
        changed = self.changed()
        if not changed:
            return 0
        values: list[dict[str, Any]] = [
            {"key_dispatch_id": row.dispatch_id, **{f"new_{c}": getattr(row, c) for c in MUTABLE}} for row in changed
        ]
        await session.execute(_UPDATE, values)
        for row in changed:
            self._read[id(row)] = _mutable(row)
        return len(changed)


def _mutable(row: SendLogRecord) -> tuple[Any, ...]:
    return tuple(getattr(row, column) for column in MUTABLE)
