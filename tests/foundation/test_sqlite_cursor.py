"""SQLite statements through ``shared.db.sqlite_cursor``: one round trip to aiosqlite's thread each, or
none on the hot paths (``on_the_loop``) for what cannot wait for a lock, and the same results and errors
as SQLAlchemy's own aiosqlite cursor either way."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import Column, CursorResult, Integer, MetaData, String, Table, event, insert, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from shared.bus import ConsumerRunner, EventProducer, RecordMeta, ensure_topics
from shared.config import DatabaseSettings, KafkaSettings
from shared.db import Database, GroupWriter, Write
from shared.db.sqlite_cursor import OneTripConnection, on_the_loop
from shared.events import AnyEvent, Topics
from shared.events.contracts import PromiseBroken, PromiseBrokenEvent
from tests.helpers import wait_for

METADATA = MetaData()
ITEMS = Table("items", METADATA, Column("id", Integer, primary_key=True), Column("name", String, unique=True),
              Column("n", Integer))


@pytest.fixture
async def sqlite(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database(DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'cursor.db'}"))
    for engine in (db.engine, db.read_engine):
        # ``SELECT thread_ident()``: the thread SQLite ran the statement on.
        event.listen(engine.sync_engine, "connect",
                     lambda dbapi, _: dbapi.create_function("thread_ident", 0, threading.get_ident))
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
    return _counted_trips(await (await session.connection()).get_raw_connection())


def _counted_trips(raw: Any) -> Callable[[], int]:
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


@pytest.fixture(params=["aiosqlite's thread", "the event loop's thread"])
def where(request: pytest.FixtureRequest) -> Iterator[None]:
    """The same statements run either way."""
    with on_the_loop() if request.param == "the event loop's thread" else contextlib.nullcontext():
        yield


async def test_results_rowcounts_and_errors_are_the_drivers(sqlite: Database, where: None) -> None:
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


async def _thread(session: AsyncSession) -> int:
    return cast(int, (await session.execute(text("SELECT thread_ident()"))).scalar_one())


async def test_on_the_loop_a_transaction_goes_to_aiosqlites_thread_only_to_begin(sqlite: Database) -> None:
    """Inside ``on_the_loop`` a write transaction's statements, and its commit, run on the event loop's
    thread: its BEGIN IMMEDIATE took the write lock, so nothing after it can wait. A reader's SELECT
    too; a PRAGMA (a checkpoint may wait) still goes to aiosqlite's thread, as everything outside."""
    loop_thread = threading.get_ident()
    with on_the_loop():
        async with sqlite.transaction() as session:
            trips = await _trips(session)  # the transaction has begun: BEGIN IMMEDIATE was a trip
            await session.execute(insert(ITEMS), [{"name": f"n{i}", "n": i} for i in range(5)])
            await session.execute(update(ITEMS).where(ITEMS.c.n > 2).values(n=0))
            assert await _thread(session) == loop_thread
            assert (await session.execute(select(ITEMS.c.name).where(ITEMS.c.n == 0))).scalars().all() == \
                ["n0", "n3", "n4"]
            assert trips() == 0
            await session.execute(text("PRAGMA foreign_keys"))
            await session.execute(text("\n  pragma foreign_keys"))  # however it is written
            assert trips() == 2
        assert trips() == 2  # the commit ran here too
        async with sqlite.read_engine.connect() as connection:  # a reader: its BEGIN DEFERRED too
            trips = _counted_trips(await connection.get_raw_connection())
            assert (await connection.execute(text("SELECT count(*) FROM items"))).scalar_one() == 5  # committed
            assert (await connection.execute(text("SELECT thread_ident()"))).scalar_one() == loop_thread
            assert trips() == 0
    async with sqlite.transaction() as session:  # outside it, as before: one trip per statement
        trips = await _trips(session)
        assert await _thread(session) != loop_thread
        assert trips() == 1
    async with sqlite.read_sessions() as session:
        assert await _thread(session) != loop_thread


async def test_a_begin_that_waits_for_the_write_lock_does_not_hold_the_event_loop(
    sqlite: Database, tmp_path: Path
) -> None:
    """Another process holds SQLite's write lock: a hot path's transaction waits for it on aiosqlite's
    thread, while the event loop goes on (here, a reader's statement on it), and then commits."""
    holder = sqlite3.connect(tmp_path / "cursor.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO items (name, n) VALUES ('holder', 1)")
    begun = asyncio.Event()

    def seen(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("BEGIN IMMEDIATE"):
            begun.set()

    event.listen(sqlite.engine.sync_engine, "before_cursor_execute", seen)

    async def write() -> None:
        with on_the_loop():
            async with sqlite.transaction() as session:
                await session.execute(insert(ITEMS).values(name="waited", n=2))

    writer = asyncio.create_task(write())
    try:
        await asyncio.wait_for(begun.wait(), 10)
        with on_the_loop():
            async with sqlite.read_sessions() as session:  # the loop is free while the BEGIN waits
                assert (await session.execute(text("SELECT count(*) FROM items"))).scalar_one() == 0
        assert not writer.done()
    finally:
        holder.commit()
        holder.close()
    await asyncio.wait_for(writer, 30)
    async with sqlite.read_sessions() as session:
        assert (await session.execute(select(ITEMS.c.name).order_by(ITEMS.c.id))).scalars().all() == \
            ["holder", "waited"]


async def test_the_group_writers_statements_run_on_the_event_loops_thread(sqlite: Database) -> None:
    """A group's writes of one kind, and a unit of work run in its submitter's context."""
    loop_thread = threading.get_ident()

    async def kind(session: AsyncSession, writes: Sequence[Write[str]]) -> list[int]:
        await session.execute(insert(ITEMS), [{"name": w.item, "n": 0} for w in writes])
        return [await _thread(session) for _ in writes]

    writer = GroupWriter(sqlite)
    await writer.start()
    try:
        assert await writer.write_many(kind, ["a", "b"]) == [loop_thread, loop_thread]
        assert await writer.run(_thread) == loop_thread
    finally:
        await writer.stop()
    async with sqlite.read_sessions() as session:
        assert (await session.execute(text("SELECT count(*) FROM items"))).scalar_one() == 2


async def test_a_consumer_batchs_statements_run_on_the_event_loops_thread(
    sqlite: Database, kafka_settings: KafkaSettings
) -> None:
    await ensure_topics(kafka_settings)
    topics = Topics(kafka_settings.topic_prefix)
    producer = EventProducer(kafka_settings)
    await producer.start()
    threads: list[int] = []

    async def handle(event: AnyEvent, meta: RecordMeta) -> None:
        raise AssertionError("handled one by one")

    async def handle_batch(items: Sequence[tuple[AnyEvent, RecordMeta]]) -> None:
        async with sqlite.transaction() as session:
            await session.execute(insert(ITEMS), [{"name": event.id, "n": 0} for event, _ in items])
            threads.append(await _thread(session))

    for i in range(5):
        await producer.publish(topics.account_events, PromiseBrokenEvent(
            subject=f"deb-{i}", data=PromiseBroken(debtor_id=f"deb-{i}", account_id=f"acc-{i}")))
    runner = ConsumerRunner(name="t", service="test", topics=[topics.account_events], group_id=f"g-{uuid.uuid4()}",
                            kafka=kafka_settings, handler=handle, producer=producer, batch_handler=handle_batch,
                            accept_types={"cadencia.account.promise_broken.v1"})
    try:
        await runner.start()

        async def all_in() -> bool:
            async with sqlite.read_sessions() as session:
                return bool((await session.execute(text("SELECT count(*) FROM items"))).scalar_one() == 5)

        await wait_for(all_in, what="the five records inserted")
    finally:
        await runner.stop()
        await producer.stop()
    assert threads and set(threads) == {threading.get_ident()}
