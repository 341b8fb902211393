"""Inbox and outbox on SQLite and PostgreSQL: effects once, events relayed only after commit."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select, text, update

from shared.bus import EventProducer, ensure_topics
from shared.config import DatabaseSettings, KafkaSettings
from shared.db import Database, OutboxRecord, OutboxRelay, add_to_outbox, first_time
from shared.db.migrate import upgrade
from shared.events import Topics
from shared.events.contracts import PromiseBroken, PromiseBrokenEvent
from shared.events.envelope import utcnow
from tests.helpers import TopicReader, wait_for


def _event(n: int) -> PromiseBrokenEvent:
    return PromiseBrokenEvent(subject=f"deb-{n % 3}", data=PromiseBroken(debtor_id=f"deb-{n % 3}", account_id=f"a{n}"))


async def test_migrations_are_idempotent(db: Database) -> None:
    await upgrade(db, "foundationtest")  # second run is a no-op
    async with db.sessions() as session:
        version = await session.scalar(text("SELECT version_num FROM alembic_version_foundationtest"))
    assert version == "shared_0003"


async def test_inbox_applies_an_event_once(db: Database) -> None:
    async with db.transaction() as session:
        assert await first_time(session, "c1", "evt-1")
    async with db.transaction() as session:
        assert not await first_time(session, "c1", "evt-1")
        assert await first_time(session, "c2", "evt-1")  # another consumer has its own inbox


async def test_inbox_mark_rolls_back_with_the_effects(db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with db.transaction() as session:
            assert await first_time(session, "c1", "evt-2")
            raise RuntimeError("effects failed")
    async with db.transaction() as session:
        assert await first_time(session, "c1", "evt-2")


async def test_outbox_relays_after_commit_and_never_on_rollback(db: Database, kafka_settings: KafkaSettings) -> None:
    await ensure_topics(kafka_settings)
    topic = Topics(kafka_settings.topic_prefix).account_events
    producer = EventProducer(kafka_settings)
    await producer.start()
    relay = OutboxRelay(db, producer, poll_interval=0.05)
    await relay.start()
    try:
        async with TopicReader(kafka_settings, topic) as reader:
            kept = [_event(i) for i in range(20)]
            async with db.transaction() as session:
                for ev in kept:
                    add_to_outbox(session, topic, ev)
            dropped = _event(99)
            with pytest.raises(RuntimeError):
                async with db.transaction() as session:
                    add_to_outbox(session, topic, dropped)
                    raise RuntimeError("rolled back")
            await wait_for(lambda: len(reader.events) >= len(kept), what="relayed events")
            await wait_for(lambda: relay.published == len(kept))
            for debtor in {e.subject for e in kept}:  # each debtor's events keep their commit order
                assert [e.id for e in reader.events if e.subject == debtor] == [
                    e.id for e in kept if e.subject == debtor
                ]
            assert dropped.id not in {e.id for e in reader.events}
            # each record names its event type in a header, as a direct publish does: consumers route on it
            assert {tuple(r.headers) for r in reader.raw} == {(("ce_type", b"cadencia.account.promise_broken.v1"),)}
    finally:
        await relay.stop()
        await producer.stop()
    async with db.sessions() as session:
        assert await session.scalar(select(func.count()).select_from(OutboxRecord)) == 0


async def test_outbox_resumes_after_restart(db: Database, kafka_settings: KafkaSettings) -> None:
    await ensure_topics(kafka_settings)
    topic = Topics(kafka_settings.topic_prefix).account_events
    pending = [_event(i) for i in range(7)]
    # Committed while no relay runs (the process died right after its transaction).
    async with db.transaction() as session:
        for ev in pending:
            add_to_outbox(session, topic, ev)
    producer = EventProducer(kafka_settings)
    await producer.start()
    relay = OutboxRelay(db, producer, poll_interval=0.05)
    try:
        async with TopicReader(kafka_settings, topic) as reader:
            await relay.start()
            await wait_for(lambda: len(reader.events) >= len(pending))
            assert {e.id for e in reader.events} == {e.id for e in pending}
    finally:
        await relay.stop()
        await producer.stop()


async def test_a_relay_holds_the_rows_behind_a_row_parked_before_it_started(
    db: Database, kafka_settings: KafkaSettings
) -> None:
    await ensure_topics(kafka_settings)
    topic = Topics(kafka_settings.topic_prefix).account_events
    first, second, other = _event(0), _event(3), _event(1)  # deb-0, deb-0, deb-1
    # A row parked by an earlier process (the relay that parked it is gone), then more rows.
    async with db.transaction() as session:
        add_to_outbox(session, topic, first)
    async with db.transaction() as session:
        await session.execute(update(OutboxRecord).values(parked_at=utcnow(), attempts=5, last_error="refused"))
        add_to_outbox(session, topic, second)
        add_to_outbox(session, topic, other)
    producer = EventProducer(kafka_settings)
    await producer.start()
    relay = OutboxRelay(db, producer)
    try:
        assert await relay.relay_once() == 1  # the other debtor's row only
        assert await relay.relay_once() == 0
        async with db.sessions() as session:
            parked = (await session.execute(select(OutboxRecord.event_id).where(
                OutboxRecord.parked_at.is_not(None)).order_by(OutboxRecord.id))).scalars().all()
        assert parked == [first.id, second.id]  # the debtor's order holds: the later row waits behind
    finally:
        await producer.stop()


async def test_a_connection_back_in_the_pool_with_a_transaction_open_is_rolled_back(db: Database) -> None:
    if not db.is_sqlite:
        pytest.skip("SQLite's pool resets only connections with a transaction open")
    # A transaction opened under SQLAlchemy's feet: the pool must still roll it back, or the single
    # write connection would come back holding the write lock.
    async with db.engine.connect() as conn:
        raw = await conn.get_raw_connection()
        await raw.driver_connection.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]
        await raw.driver_connection.execute(  # type: ignore[union-attr]
            "INSERT INTO inbox (consumer, event_id, processed_at) VALUES ('c', 'left-open', '2026-01-01')")
    async with db.transaction() as session:
        assert await first_time(session, "c", "committed")
    async with db.sessions() as session:
        marks = (await session.execute(text("SELECT event_id FROM inbox WHERE consumer = 'c'"))).scalars().all()
    assert marks == ["committed"]


async def test_sqlite_copies_the_wal_back_in_the_background_before_a_commit_must(tmp_path: Path) -> None:
    """Pages reach the database file between commits, on a reader, long before the WAL reaches the
    bound at which a commit would copy them itself (10–50 ms on the write path under load)."""
    path = tmp_path / "wal.db"
    db = Database(DatabaseSettings(url=f"sqlite+aiosqlite:///{path}", wal_checkpoint_interval=0.05))
    try:
        async with db.transaction() as session:
            assert await session.scalar(text("PRAGMA wal_autocheckpoint")) == 4 * 8000  # a backstop only
            await session.execute(text("CREATE TABLE blobs (n INTEGER PRIMARY KEY, data BLOB)"))
        for _ in range(20):  # about 600 pages: under SQLite's own 1,000 and the bound of 8,000
            async with db.transaction() as session:
                await session.execute(text("INSERT INTO blobs (data) VALUES (randomblob(120000))"))
        assert db.checkpoints is not None

        def copied_back() -> bool:  # the rows' pages reached the database file itself
            return path.stat().st_size >= 20 * 120_000 and db.checkpoints is not None and db.checkpoints.runs > 0

        await wait_for(copied_back, what="the background checkpoint")
        async with db.read_sessions() as session:
            assert await session.scalar(text("SELECT count(*) FROM blobs")) == 20
    finally:
        await db.dispose()


async def test_sqlite_wal_stays_bounded_while_writers_keep_appending(tmp_path: Path) -> None:
    """Checkpoints from a reader never catch up with a writer that keeps appending, and SQLite starts
    the WAL over only once all of it is copied back: past the bound the background finishes the copy
    on the write connection and starts the WAL over, so it stays a few rounds of writes past its
    bound however long the writes go on (it grows with the writes without: 1.5 GB in a 20,000-request
    burst). Each round of writes waits for a pass, as writes spread over time do."""
    path = tmp_path / "wal.db"
    wal = tmp_path / "wal.db-wal"
    bound = 100
    db = Database(DatabaseSettings(
        url=f"sqlite+aiosqlite:///{path}", wal_checkpoint_interval=0.005, wal_bound_pages=bound,
    ))
    checkpoints = db.checkpoints
    assert checkpoints is not None
    try:
        async with db.transaction() as session:
            page = await session.scalar(text("PRAGMA page_size"))
            await session.execute(text("CREATE TABLE blobs (n INTEGER PRIMARY KEY, data BLOB)"))
        largest = 0
        for _ in range(60):  # about 2,500 pages of writes, 25 times the bound, 8 pages a commit
            passes = checkpoints.runs
            for n in range(5):
                async with db.transaction() as session:
                    await session.execute(text("INSERT INTO blobs (data) VALUES (randomblob(30000))"))
                    if n == 0:
                        await session.execute(text("DELETE FROM blobs WHERE n < (SELECT max(n) - 5 FROM blobs)"))
                largest = max(largest, wal.stat().st_size)
            await wait_for(lambda: checkpoints.runs > passes, what="a checkpoint pass")  # noqa: B023
        assert checkpoints.restarts > 0
        assert largest < 4 * bound * page, (largest, page)
        async with db.read_sessions() as session:
            assert await session.scalar(text("SELECT max(n) FROM blobs")) == 300
    finally:
        await db.dispose()
