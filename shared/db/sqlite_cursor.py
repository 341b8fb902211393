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

**On the event loop's own thread.** Even one round trip is two wake-ups, of aiosqlite's thread and
then of the event loop, each waiting for a core on a busy machine, for a statement that often takes
SQLite less than either (docs/benchmarks.md, twenty-second round). Inside :func:`on_the_loop` (the
hot paths: a consumer's batch, the group writer's commit, the outbox relay's pass) a statement that
cannot wait for a lock runs on the calling thread instead, and so do the commit and rollback:

- on the write engine, any statement once its transaction has begun: ``BEGIN IMMEDIATE`` already
  took SQLite's write lock, so nothing after it waits for another writer (under WAL a commit never
  waits either; its checkpoint, when the background one fell far behind, is ``PASSIVE``);
- on the readers' engine, its ``BEGIN DEFERRED`` (no lock until the first read) and a ``SELECT``:
  under WAL a reader never waits.

What may wait stays on aiosqlite's thread, so a busy handler never holds the event loop: a
``BEGIN IMMEDIATE`` (another process's writer, a checkpoint's ``RESTART``), every ``PRAGMA``, anything
outside a transaction, and every statement outside :func:`on_the_loop` (the retention pruner's
deletes, dashboards' aggregates, migrations), which may run long.
"""

from __future__ import annotations

import collections
import contextlib
import sqlite3
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from typing import Any

from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_connection, AsyncAdapt_aiosqlite_cursor

_ON_THE_LOOP: ContextVar[bool] = ContextVar("sqlite_on_the_loop", default=False)


@contextlib.contextmanager
def on_the_loop() -> Iterator[None]:
    """Run this task's short SQLite statements that cannot wait for a lock on the event loop's thread
    (module docstring); tasks it starts inherit it. Only for work made of indexed, batch-sized
    statements: a long one would hold every other task of the process while it runs."""
    token = _ON_THE_LOOP.set(True)
    try:
        yield
    finally:
        _ON_THE_LOOP.reset(token)


def _inline(adapt_connection: Any, operation: str) -> bool:
    """Whether ``operation`` runs on the calling thread: asked for, and it cannot wait for a lock."""
    if not _ON_THE_LOOP.get():
        return False
    if operation == "BEGIN DEFERRED":
        return True  # takes no lock: the transaction starts at its first read
    connection: sqlite3.Connection = adapt_connection._connection._conn
    verb = operation.lstrip()[:6].upper()
    if not connection.in_transaction or verb == "PRAGMA":
        return False  # BEGIN IMMEDIATE, autocommit statements and PRAGMAs (checkpoints) may wait
    return adapt_connection.holds_write_lock or verb == "SELECT"


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
        """``fn`` (a whole statement) under the connection's mutex: here when it cannot wait for a lock
        inside :func:`on_the_loop`, else in one round trip to aiosqlite's thread."""
        async with self._adapt_connection._execute_mutex:
            if _inline(self._adapt_connection, operation):
                self._keep(fn(self._connection, operation, parameters))
            else:
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
    """A readers' connection (``BEGIN DEFERRED``): inside :func:`on_the_loop`, its ``SELECT`` statements run on
    the calling thread."""

    __slots__ = ()
    _cursor_cls = OneTripCursor
    #: Whether an open transaction holds SQLite's write lock (``BEGIN IMMEDIATE``).
    holds_write_lock = False

    def commit(self) -> None:
        if self._ends_here():
            self._end(self._connection._conn.commit)
        else:
            super().commit()

    def rollback(self) -> None:
        if self._ends_here():
            self._end(self._connection._conn.rollback)
        else:
            super().rollback()

    def _ends_here(self) -> bool:
        # No lock to wait for when a transaction ends; nothing to end on a closed connection.
        return _ON_THE_LOOP.get() and self._connection._connection is not None and self._connection._conn.in_transaction

    def _end(self, end: Any) -> None:
        try:
            end()
        except Exception as error:
            self._handle_exception(error)


class OneTripWriteConnection(OneTripConnection):
    """The write engine's connection (``BEGIN IMMEDIATE``): inside :func:`on_the_loop`, every statement
    of an open transaction runs on the calling thread."""

    __slots__ = ()
    holds_write_lock = True


def one_trip_cursors(dbapi_connection: Any, *, writer: bool = False) -> None:
    """Give a new ``sqlite+aiosqlite`` connection (the pool's ``connect`` event) one-trip cursors;
    ``writer``: its transactions begin ``IMMEDIATE``."""
    if type(dbapi_connection) is AsyncAdapt_aiosqlite_connection:
        dbapi_connection.__class__ = OneTripWriteConnection if writer else OneTripConnection
