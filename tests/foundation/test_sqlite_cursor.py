"""SQLite statements through ``shared.db.sqlite_cursor``: one round trip to aiosqlite's thread each, and
the same results and errors as SQLAlchemy's own aiosqlite cursor."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import Column, CursorResult, Integer, MetaData, String, Table, insert, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from shared.config import DatabaseSettings
from shared.db import Database
from shared.db.sqlite_cursor import OneTripConnection

METADATA = MetaData()
ITEMS = Table("items", METADATA, Column("id", Integer, primary_key=True), Column("name", String, unique=True),
              Column("n", Integer))


@pytest.fixture
async def sqlite(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'cursor.db'}"))
    async with db.engine.begin() as connection:
        await connection.run_sync(METADATA.create_all)
    yield db
    await db.engine.dispose()
    await db.read_engine.dispose()


class _Counted:
    """aiosqlite's queue of calls for its thread, counting what is put on it (the thread keeps reading
    the queue itself)."""

    def __init__(self, queue: Any) -> None:
        self.queue, self.count = queue, 0

    def put_nowait(self, item: Any) -> None:
        self.count += 1
        self.queue.put_nowait(item)


async def _trips(session: AsyncSession) -> Callable[[], int]:
    """Count the calls queued to the session's aiosqlite thread from now on."""
    raw = await (await session.connection()).get_raw_connection()
    assert isinstance(raw.dbapi_connection, OneTripConnection)
    aiosqlite_connection = raw.dbapi_connection._connection
    counted = _Counted(aiosqlite_connection._tx)
    aiosqlite_connection._tx = counted
    return lambda: counted.count


async def test_each_statement_is_one_round_trip_to_the_sqlite_thread(sqlite: Database) -> None:
    async with sqlite.transaction() as session:
        trips = await _trips(session)
        before = trips()
        await session.execute(insert(ITEMS), [{"name": f"n{i}", "n": i} for i in range(5)])  # executemany
        assert trips() - before == 1
        before = trips()
        returned = (await session.execute(insert(ITEMS).values(name="r", n=9).returning(ITEMS.c.id))).scalar_one()
        assert trips() - before == 1 and returned == 6
        before = trips()
        rows = (await session.execute(select(ITEMS.c.name).order_by(ITEMS.c.id))).scalars().all()
        assert trips() - before == 1 and rows == ["n0", "n1", "n2", "n3", "n4", "r"]
    async with sqlite.read_sessions() as session:  # the readers' connections too
        trips = await _trips(session)
        before = trips()
        assert (await session.execute(text("SELECT count(*) FROM items"))).scalar_one() == 6
        assert trips() - before == 1


async def test_results_rowcounts_and_errors_are_the_drivers(sqlite: Database) -> None:
    async with sqlite.transaction() as session:
        many = cast(CursorResult[Any], await session.execute(insert(ITEMS),
                                                             [{"name": f"n{i}", "n": i % 2} for i in range(6)]))
        assert many.rowcount == 6
        one = cast(CursorResult[Any], await session.execute(text("INSERT INTO items (name, n) VALUES ('x', 1)")))
        assert one.lastrowid == 7
        changed = cast(CursorResult[Any], await session.execute(update(ITEMS).where(ITEMS.c.n == 1).values(n=2)))
        assert changed.rowcount == 4
        result = await session.execute(text("SELECT id, name AS label FROM items WHERE n = 2 ORDER BY id"))
        assert list(result.keys()) == ["id", "label"]
        assert [tuple(r) for r in result] == [(2, "n1"), (4, "n3"), (6, "n5"), (7, "x")]
        assert (await session.execute(select(ITEMS).where(ITEMS.c.name == "none"))).first() is None
        partitions = (await session.execute(select(ITEMS.c.id).order_by(ITEMS.c.id))).partitions(3)
        assert [[r[0] for r in p] for p in partitions] == [[1, 2, 3], [4, 5, 6], [7]]
    with pytest.raises(IntegrityError):
        async with sqlite.transaction() as session:
            await session.execute(insert(ITEMS).values(name="x", n=0))  # unique name
    with pytest.raises(OperationalError, match="no such table"):
        async with sqlite.transaction() as session:
            await session.execute(text("SELECT * FROM missing"))
    async with sqlite.sessions() as session:  # the failed transactions left nothing behind
        assert (await session.execute(text("SELECT count(*) FROM items"))).scalar_one() == 7
        streamed = await session.stream(select(ITEMS.c.name).order_by(ITEMS.c.id))  # a server-side cursor
        assert [name async for name in streamed.scalars()] == ["n0", "n1", "n2", "n3", "n4", "n5", "x"]
