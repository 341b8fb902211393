"""The consumer runner's crash log on SQLite and PostgreSQL: a fetch's partitions are recorded in one
transaction, with the counts that recording them one at a time gives."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event

from shared.db import Database
from shared.db.attempts import ConsumerAttempts


def count_commits(db: Database) -> list[int]:
    commits = [0]

    @event.listens_for(db.engine.sync_engine, "commit")
    def _commit(_: Any) -> None:
        commits[0] += 1

    return commits


async def test_a_fetch_is_recorded_in_one_transaction_with_the_counts_of_one_partition_at_a_time(db: Database) -> None:
    log = ConsumerAttempts(db)
    commits = count_commits(db)
    fetch = {("t.requests", 0): 10, ("t.requests", 1): 20, ("t.outcomes", 3): 5}

    assert await log.begin_batch("g", fetch) == dict.fromkeys(fetch, 1)
    assert commits[0] == 1
    # The same records again (the process died before committing them): a second attempt each.
    assert await log.begin_batch("g", fetch) == dict.fromkeys(fetch, 2)
    assert commits[0] == 2

    # Recorded one partition at a time, in another group, the counts are the same.
    for (topic, partition), offset in fetch.items():
        await log.begin("h", topic, partition, offset)
    for (topic, partition), offset in fetch.items():
        assert await log.begin("h", topic, partition, offset) == 2


async def test_a_partition_that_moved_on_starts_again_and_attempts_alone_count(db: Database) -> None:
    log = ConsumerAttempts(db)
    await log.begin_batch("g", {("t", 0): 10, ("t", 1): 20})
    await log.begin_batch("g", {("t", 0): 10, ("t", 1): 20})
    assert await log.begin("g", "t", 0, 10, alone=True) == 1  # isolating partition 0's records

    counts = await log.begin_batch("g", {("t", 0): 10, ("t", 1): 21, ("t", 2): 0})
    # Partition 0: three attempts as a batch plus one alone; 1 moved past its records; 2 is new.
    assert counts == {("t", 0): 4, ("t", 1): 1, ("t", 2): 1}
    assert await log.count("g", "t", 0) == 4
    assert await log.begin_batch("g", {}) == {}
