"""A SQLite statement in one round trip to aiosqlite's thread.

aiosqlite runs every call on the connection in its own thread and hands the result back to the event
loop. SQLAlchemy's aiosqlite cursor makes one such round trip to open the cursor, one to execute, one
to fetch the rows and one to close it: three or four per statement, each a wake-up of that thread and
then of the event loop. On a busy machine each wake-up waits for a core, and a consumer batch of the
orchestrator runs about twenty statements (docs/benchmarks.md, seventh round).

:class:`OneTripCursor` opens, executes, fetches every row and closes in one function run on
aiosqlite's thread, and keeps what SQLAlchemy reads afterwards (``description``, ``rowcount``,
``lastrowid``, the rows). Errors are the driver's own, raised as from aiosqlite's cursor, so
SQLAlchemy wraps them the same way. Server-side cursors (``stream_results``) keep SQLAlchemy's class.
:func:`one_trip_cursors` switches a connection of the ``sqlite+aiosqlite`` dialect to it.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Sequence
from typing import Any

from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_connection, AsyncAdapt_aiosqlite_cursor

#: What one statement left behind: description, rowcount, lastrowid, rows (None without a result set).
_Outcome = tuple[Any, int, int | None, list[Any] | None]


def _run_one(connection: Any, operation: str, parameters: Any) -> _Outcome:
    """On aiosqlite's thread: the whole statement, cursor closed before returning."""
    cursor: sqlite3.Cursor = connection._conn.cursor()
    try:
        if parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else None
        return description, cursor.rowcount, cursor.lastrowid, rows
    finally:
        cursor.close()


def _run_many(connection: Any, operation: str, seq_of_parameters: Sequence[Any]) -> _Outcome:
    cursor: sqlite3.Cursor = connection._conn.cursor()
    try:
        cursor.executemany(operation, seq_of_parameters)
        return cursor.description, cursor.rowcount, cursor.lastrowid, None
    finally:
        cursor.close()


class OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    """SQLAlchemy's aiosqlite cursor, each statement one round trip to aiosqlite's thread."""

    __slots__ = ("_description", "_rowcount", "_lastrowid")

    def __init__(self, adapt_connection: Any) -> None:
        # Not the parent's __init__: it opens an aiosqlite cursor (a round trip) that is never needed.
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = {}  # type: ignore[assignment]
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int | None:  # type: ignore[override]
        return self._lastrowid

    @property
    def arraysize(self) -> int:
        return 1  # sqlite3's default: only ``fetchmany()`` without a size reads it

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        pass  # every row is fetched with the statement

    def _keep(self, outcome: _Outcome) -> None:
        self._description, self._rowcount, self._lastrowid, rows = outcome
        self._rows = collections.deque(rows) if rows is not None else collections.deque()

    async def _run(self, fn: Any, operation: Any, parameters: Any) -> None:
        """``fn`` (a whole statement) in one round trip, under the connection's mutex."""
        async with self._adapt_connection._execute_mutex:
            self._keep(await self._connection._execute(fn, self._connection, operation, parameters))

    async def _execute_async(self, operation: Any, parameters: Any) -> Any:
        await self._run(_run_one, operation, parameters)

    async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> Any:
        await self._run(_run_many, operation, seq_of_parameters)

    async def _async_soft_close(self) -> None:
        return None  # nothing open: the statement's cursor was closed on the thread

    def close(self) -> None:
        self._rows.clear()


class OneTripConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ()
    _cursor_cls = OneTripCursor


def one_trip_cursors(dbapi_connection: Any) -> None:
    """Give a new ``sqlite+aiosqlite`` connection (the pool's ``connect`` event) one-trip cursors."""
    if type(dbapi_connection) is AsyncAdapt_aiosqlite_connection:
        dbapi_connection.__class__ = OneTripConnection
