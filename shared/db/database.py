"""The engine, sessions and transactions of one service's database."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

from shared.config import DatabaseSettings
from shared.db.sqlite_cursor import one_trip_cursors
from shared.logging import get_logger

log = get_logger(__name__)

#: Driver errors of a connection the server closed (``pg_terminate_backend``, a restart, a failover) or
#: left unusable mid-operation, by class name (asyncpg's, without importing the driver).
_LOST_CONNECTION = frozenset({
    "ConnectionDoesNotExistError", "AdminShutdownError", "CannotConnectNowError", "ConnectionFailureError",
    "InterfaceError", "InternalClientError", "ConnectionResetError", "BrokenPipeError",
})


def connection_lost(exc: BaseException) -> bool:
    """The database connection was lost or broken under the statement: the transaction was rolled
    back by the server, so running the same unit of work again is safe (it is retried, never
    dead-lettered)."""
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError):
            return True
        orig: BaseException | None = exc.orig
    else:
        orig = exc
    seen = 0
    while orig is not None and seen < 5:
        if any(cls.__name__ in _LOST_CONNECTION for cls in type(orig).__mro__):
            return True
        orig, seen = orig.__cause__ or orig.__context__, seen + 1
    return False


#: How long a SQLite connection waits for a lock another process holds (writers of one process queue
#: in the pool instead).
BUSY_TIMEOUT_MS = 30_000

#: ``session.info`` key of the database's :attr:`Database.memo`, in every session it makes.
MEMO = "cadencia.db.memo"


def memo_of(session: AsyncSession) -> dict[Any, Any] | None:
    """The memo of the database ``session`` belongs to; None for a session made some other way."""
    memo: dict[Any, Any] | None = session.info.get(MEMO)
    return memo


class WalCheckpoints:
    """SQLite's WAL copied back into the database file in the background, not inside a commit.

    By default the commit that takes the WAL past 1,000 pages copies it back into the database file,
    and syncs it, before it returns. Under load that was one commit in five of the orchestrator's
    decision batches, 10–50 ms each, with every other writer queued behind it on the one write
    connection (docs/benchmarks.md, tenth and eleventh rounds). After a commit this task runs a
    ``PASSIVE`` checkpoint (it waits for no reader or writer) on a reader connection, at most once per
    ``interval`` seconds.

    A checkpoint beside a writer that keeps appending never catches up, and SQLite starts the WAL
    over only once every frame in it is back in the database file: without a bound the WAL grew to
    1.5 GB in a 20,000-request burst. So when a pass finds ``bound_pages`` or more in the WAL, the
    task finishes the copy on the write connection itself, taken from the pool like any writer's (no
    write can append meanwhile, and the pass just before left only its own few pages to copy), and
    starts the WAL over (``RESTART``). The write connection's own automatic checkpoint stays on at
    four times the bound, should this task ever fall behind. Durability does not change: a commit is
    in the WAL either way.
    """

    #: The write connection's own automatic checkpoint, in bounds: a backstop only.
    BACKSTOP = 4
    #: How long a finish waits for readers of the WAL's old frames before leaving the restart for
    #: the next one, with the writers held back meanwhile.
    FINISH_WAIT_MS = 20

    def __init__(self, read_engine: AsyncEngine, write_engine: AsyncEngine, interval: float, bound_pages: int) -> None:
        self.read_engine, self.write_engine = read_engine, write_engine
        self.interval, self.bound_pages = interval, bound_pages
        #: Passes run on a reader, and copies finished on the write connection (for tests and metrics).
        self.runs = self.finishes = self.restarts = 0
        self._task: asyncio.Task[None] | None = None
        self._due: asyncio.Event | None = None

    def committed(self) -> None:
        """A write committed (the write engine's ``commit`` event, on the event loop's thread)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # a commit outside an event loop: the next one in a loop starts the task
            return
        if self._task is None or self._task.done() or self._task.get_loop() is not loop:
            self._due = asyncio.Event()
            # Its own context, not the committing task's: none of that batch's log fields, and its
            # statements are not the hot path's (sqlite_cursor.on_the_loop).
            self._task = loop.create_task(self._run(self._due), name="sqlite-wal-checkpoints",
                                          context=contextvars.Context())
        assert self._due is not None
        self._due.set()

    async def _run(self, due: asyncio.Event) -> None:
        while True:
            await due.wait()
            due.clear()
            try:
                async with self.read_engine.connect() as conn:  # a deferred BEGIN reads nothing: the PRAGMA runs
                    # (busy, frames in the WAL, frames copied back)
                    row: Any = (await conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")).one()
                self.runs += 1
                frames = row[1]
                if frames >= self.bound_pages:
                    await self._finish()
            except Exception as exc:  # noqa: BLE001 - the next commit tries again
                log.warning("sqlite WAL checkpoint failed", error=str(exc)[:300])
            await asyncio.sleep(self.interval)

    async def _finish(self) -> None:
        """Copy what is left and start the WAL over, with the writers held back (``RESTART``: it
        waits for the readers of the old frames, at most ``FINISH_WAIT_MS``; if one is still reading,
        the pages are copied all the same and the next finish starts the WAL over)."""
        async with self.write_engine.connect() as conn:
            # On the driver's connection: SQLAlchemy would open a transaction first, and SQLite
            # refuses a checkpoint inside one.
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw is not None

            async def pragma(sql: str) -> Any:
                cursor = await raw.execute(sql)
                try:
                    return await cursor.fetchone()
                finally:
                    await cursor.close()

            await pragma(f"PRAGMA busy_timeout={self.FINISH_WAIT_MS}")
            try:
                busy, _, _ = await pragma("PRAGMA wal_checkpoint(RESTART)")
            finally:
                await pragma(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        self.finishes += 1
        self.restarts += not busy

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


class Base(DeclarativeBase):
    """Declarative base of every table; each service's migrations create only its own."""


class Database:
    """Owns the engine; ``transaction()`` is the unit of work (commit on success, then hooks run)."""

    def __init__(self, settings: DatabaseSettings) -> None:
        self.url = make_url(settings.url)
        self.is_sqlite = self.url.get_backend_name() == "sqlite"
        self.is_postgres = self.url.get_backend_name() == "postgresql"
        kwargs: dict[str, Any] = {"echo": settings.echo}
        self.checkpoints: WalCheckpoints | None = None
        if self.is_sqlite:
            database = self.url.database or ""
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            # The connection is opened on aiosqlite's thread; the hot paths also use it from the event
            # loop's (sqlite_cursor.on_the_loop), one call at a time, never both at once.
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
            # A connection back in the pool is rolled back only when a transaction is open (``_reset``).
            kwargs["pool_reset_on_return"] = None
            # SQLite has one writer at a time. Writers queue for the single write connection in the
            # asyncio pool (fair, no polling) instead of inside SQLite's busy handler, which sleeps
            # in steps of up to 100 ms and cut the SMS pipeline to a few dozen messages a second.
            self.engine: AsyncEngine = create_async_engine(
                self.url, pool_size=1, max_overflow=0, pool_timeout=120, **kwargs
            )
            # Readers get their own connections and deferred transactions: under WAL they never wait.
            self.read_engine: AsyncEngine = create_async_engine(
                self.url, pool_size=settings.pool_size, max_overflow=0, **kwargs
            ).execution_options(sqlite_begin="DEFERRED")
            self._tune_sqlite(self.engine, writer=True)
            self._tune_sqlite(self.read_engine, writer=False)
            if database and database != ":memory:":
                self.checkpoints = WalCheckpoints(
                    self.read_engine, self.engine, settings.wal_checkpoint_interval, settings.wal_bound_pages
                )
                self._checkpoint_in_background(self.engine, self.checkpoints)
        else:
            kwargs.update(pool_size=settings.pool_size, max_overflow=settings.pool_size, pool_pre_ping=True)
            self.engine = create_async_engine(self.url, **kwargs)
            self.read_engine = self.engine
        #: What never changes in this database once written (a published template version), kept for the
        #: process's life. It belongs to the database, not the process: a cache keyed by what it holds
        #: alone would hand one database's rows to another opened in the same process (tests open many).
        self.memo: dict[Any, Any] = {}
        info = {MEMO: self.memo}
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False, info=info)
        #: Read-only work (dashboards, listings, the SQLite outbox relay's read).
        self.read_sessions = async_sessionmaker(self.read_engine, expire_on_commit=False, info=info)
        self._after_commit: list[Callable[[], None]] = []

    @staticmethod
    def _tune_sqlite(engine: AsyncEngine, *, writer: bool) -> None:
        sync_engine = engine.sync_engine

        @event.listens_for(sync_engine, "connect")
        def _connect(dbapi_connection: Any, _: Any) -> None:
            # A statement in one round trip to aiosqlite's thread, or none on the hot paths (sqlite_cursor).
            one_trip_cursors(dbapi_connection, writer=writer)
            # Let SQLAlchemy own transactions so every write transaction starts with BEGIN IMMEDIATE:
            # concurrent writers then queue on busy_timeout instead of failing to upgrade a read lock.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        @event.listens_for(sync_engine, "begin")
        def _begin(connection: Any) -> None:
            mode = connection.get_execution_options().get("sqlite_begin", "IMMEDIATE")
            connection.exec_driver_sql(f"BEGIN {mode}")  # one round trip, as every statement (sqlite_cursor)

        @event.listens_for(sync_engine, "reset")
        def _reset(dbapi_connection: Any, _: Any, state: Any) -> None:
            # The pool's own reset rolls back every connection it takes back, even one whose
            # transaction just committed: a round trip to aiosqlite's thread per transaction, about
            # one in eight of a write's. Only an open transaction is rolled back here.
            if state.terminate_only or not state.asyncio_safe:
                return
            try:
                open_transaction = bool(dbapi_connection._connection.in_transaction)
            except Exception:  # noqa: BLE001 - cannot tell: roll back as the pool would
                open_transaction = True
            if open_transaction:
                dbapi_connection.rollback()

    @staticmethod
    def _checkpoint_in_background(engine: AsyncEngine, checkpoints: WalCheckpoints) -> None:
        sync_engine = engine.sync_engine
        backstop = checkpoints.BACKSTOP * checkpoints.bound_pages

        @event.listens_for(sync_engine, "connect")
        def _backstop(dbapi_connection: Any, _: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA wal_autocheckpoint={int(backstop)}")  # only if the background falls behind
            cursor.close()

        @event.listens_for(sync_engine, "commit")
        def _committed(connection: Any) -> None:
            checkpoints.committed()

    def on_commit(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` after every successful ``transaction()`` (e.g. wake the outbox relay)."""
        self._after_commit.append(hook)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: the inbox mark, state changes and outbox rows commit together."""
        async with self.sessions() as session, session.begin():
            yield session
        for hook in self._after_commit:
            hook()

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        if self.checkpoints is not None:
            await self.checkpoints.stop()
        await self.engine.dispose()
        if self.read_engine is not self.engine:
            await self.read_engine.dispose()
