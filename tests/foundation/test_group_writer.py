"""The group writer on SQLite and PostgreSQL: writes submitted together share a transaction, each
submitter resumes only once its write is committed, a bad write fails only its own submitter, and what
a write stages carries its submitter's trace."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import (
    Database,
    GroupWriter,
    InboxRecord,
    OutboxBatch,
    OutboxRecord,
    Write,
    WriterStopped,
    mark_processed,
)
from shared.events import parse_event
from shared.events.contracts import PromiseBroken, PromiseBrokenEvent
from shared.tracing import continued, new_trace, parse_traceparent


@pytest.fixture
async def writer(db: Database) -> AsyncIterator[GroupWriter]:
    group = GroupWriter(db)
    await group.start()
    yield group
    await group.stop()


async def mark(session: AsyncSession, writes: Sequence[Write[str]]) -> list[str]:
    """A kind of write: inbox marks, one statement for the group; refuses the event id ``poison``."""
    if any(w.item == "poison" for w in writes):
        raise ValueError("poison")
    await mark_processed(session, "writer-test", [w.item for w in writes])
    return [f"marked {w.item}" for w in writes]


async def marked(db: Database, event_id: str) -> bool:
    async with db.read_sessions() as session:
        return await session.get(InboxRecord, ("writer-test", event_id)) is not None


async def test_writes_submitted_together_share_one_commit_and_each_resumes_after_it(
    db: Database, writer: GroupWriter
) -> None:
    commits = 0

    def counted() -> None:
        nonlocal commits
        commits += 1

    db.on_commit(counted)

    async def one(n: int) -> None:
        assert await writer.write(mark, f"evt-{n}") == f"marked evt-{n}"
        assert await marked(db, f"evt-{n}")  # durable (another connection sees it) when the write returns

    await asyncio.gather(*(one(n) for n in range(50)))
    assert writer.rows == 50
    assert commits == writer.commits and 1 <= commits < 50


async def test_a_failing_write_fails_only_its_own_submitter(db: Database, writer: GroupWriter) -> None:
    results = await asyncio.gather(*(writer.write(mark, item) for item in ("a", "poison", "b")),
                                   return_exceptions=True)
    assert results[0] == "marked a" and results[2] == "marked b"
    assert isinstance(results[1], ValueError)
    assert writer.split == 1  # the group failed, its writes were committed one at a time
    assert await marked(db, "a") and await marked(db, "b") and not await marked(db, "poison")


async def test_stopping_commits_what_is_pending_and_refuses_later_writes(db: Database) -> None:
    writer = GroupWriter(db)
    await writer.start()
    pending = writer.submit(mark, "last")
    await writer.stop()
    assert await pending == "marked last"
    assert await marked(db, "last")
    with pytest.raises(WriterStopped):
        writer.submit(mark, "too-late")
    with pytest.raises(RuntimeError):
        await writer.ping()


async def stage(session: AsyncSession, writes: Sequence[Write[str]]) -> list[None]:
    """A kind that publishes an event per write through the outbox, staged in the write's context."""
    outbox = OutboxBatch()
    for write in writes:
        event = PromiseBrokenEvent(subject=write.item, data=PromiseBroken(debtor_id=write.item, account_id="a1"))
        write.run(outbox.add, "promises", event)
    await outbox.insert(session)
    return [None] * len(writes)


async def test_what_a_write_stages_continues_its_submitters_trace(db: Database, writer: GroupWriter) -> None:
    traces = {f"deb-{n}": new_trace() for n in range(5)}

    async def submit(debtor: str) -> None:
        with continued(traces[debtor]):
            await writer.write(stage, debtor)

    await asyncio.gather(*(submit(debtor) for debtor in traces))
    async with db.read_sessions() as session:
        rows = (await session.execute(select(OutboxRecord).order_by(OutboxRecord.id))).scalars().all()
    assert len(rows) == 5
    for row in rows:
        event = parse_event(row.value)
        parent = parse_traceparent(event.traceparent)
        assert parent is not None and parent.trace_id == traces[str(row.key)].trace_id
