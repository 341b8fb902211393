"""The engine, sessions and transactions of one service's database."""

from __future__ import annotations

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
        else:
            kwargs.update(pool_size=settings.pool_size, max_overflow=settings.pool_size, pool_pre_ping=True)
            self.engine = create_async_engine(self.url, **kwargs)
            self.read_engine = self.engine
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
        await self.engine.dispose()
        if self.read_engine is not self.engine:
            await self.read_engine.dispose()
