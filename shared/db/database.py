"""The engine, sessions and transactions of one service's database."""

from __future__ import annotations

import asyncio
import contextlib
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


class WalCheckpoints:
    """SQLite's WAL checkpoints, run in the background instead of inside a commit.

    By default the connection whose commit takes the WAL past 1,000 pages copies the WAL back into the
    database file, and syncs it, before that commit returns. Under load that was one commit in five of
    the orchestrator's decision batches, 10–50 ms each, with every other writer queued behind it on
    the one write connection (docs/benchmarks.md, tenth round). The write connection turns automatic
    checkpoints off; after a commit, this task runs a ``PASSIVE`` checkpoint (it waits for no reader or
    writer) on a reader connection, at most once per ``interval`` seconds. Durability does not change:
    a commit is in the WAL either way.
    """

    def __init__(self, engine: AsyncEngine, interval: float) -> None:
        self.engine, self.interval = engine, interval
        self.runs = 0
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
            self._task = loop.create_task(self._run(self._due), name="sqlite-wal-checkpoints")
        assert self._due is not None
        self._due.set()

    async def _run(self, due: asyncio.Event) -> None:
        while True:
            await due.wait()
            due.clear()
            try:
                async with self.engine.connect() as conn:  # a deferred BEGIN reads nothing: the PRAGMA runs
                    await conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
                self.runs += 1
            except Exception as exc:  # noqa: BLE001 - the next commit tries again
                log.warning("sqlite WAL checkpoint failed", error=str(exc)[:300])
            await asyncio.sleep(self.interval)

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
        if self.is_sqlite:
            database = self.url.database or ""
            if database and database != ":memory:":
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 30}
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
            self._tune_sqlite(self.engine)
            self._tune_sqlite(self.read_engine)
            self.checkpoints: WalCheckpoints | None = None
            if database and database != ":memory:":
                self.checkpoints = WalCheckpoints(self.read_engine, settings.wal_checkpoint_interval)
                self._checkpoint_in_background(self.engine, self.checkpoints)
        else:
            kwargs.update(pool_size=settings.pool_size, max_overflow=settings.pool_size, pool_pre_ping=True)
            self.engine = create_async_engine(self.url, **kwargs)
            self.read_engine = self.engine
            self.checkpoints = None
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        #: Read-only work (dashboards, listings, the SQLite outbox relay's read).
        self.read_sessions = async_sessionmaker(self.read_engine, expire_on_commit=False)
        self._after_commit: list[Callable[[], None]] = []

    @staticmethod
    def _tune_sqlite(engine: AsyncEngine) -> None:
        sync_engine = engine.sync_engine

        @event.listens_for(sync_engine, "connect")
        def _connect(dbapi_connection: Any, _: Any) -> None:
            one_trip_cursors(dbapi_connection)  # a statement in one round trip to aiosqlite's thread
            # Let SQLAlchemy own transactions so every write transaction starts with BEGIN IMMEDIATE:
            # concurrent writers then queue on busy_timeout instead of failing to upgrade a read lock.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA busy_timeout=30000")
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

        @event.listens_for(sync_engine, "connect")
        def _no_autocheckpoint(dbapi_connection: Any, _: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA wal_autocheckpoint=0")  # the writes' commits never checkpoint
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
