"""Crashes: PostgreSQL drops the orchestrator's and the SMS service's connections mid-campaign.

Both services run on PostgreSQL; while a campaign goes through them, every backend of their two
databases is terminated (``pg_terminate_backend``) again and again. Transactions cut off are rolled
back and retried: every request ends terminal, nothing is applied twice (one dispatch per request,
one ledger row per outcome event, one provider request per dispatch).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from shared.events import Topics
from tests.helpers import TopicReader, wait_for
from tests.reliability.campaign import Audit, audit, contact_requests, last_statuses, publish, settled
from tests.reliability.cluster import Cluster, running_cluster

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.timeout(600)]

REQUESTS = 200
SECONDS = 30.0
#: Seconds between two rounds of terminations.
EVERY_S = 1.5


@contextlib.asynccontextmanager
async def databases(admin_dsn: str, *services: str) -> AsyncIterator[dict[str, str]]:
    """A throwaway database per service, dropped afterwards."""
    names = {s: f"cadencia_test_{uuid.uuid4().hex[:10]}_{s}" for s in services}
    conn = await asyncpg.connect(admin_dsn)
    try:
        for name in names.values():
            await conn.execute(f'CREATE DATABASE "{name}"')
        base = admin_dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        yield {s: f"{base}/{name}" for s, name in names.items()}
    finally:
        for name in names.values():
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()


async def terminate(admin_dsn: str, names: list[str], stop: asyncio.Event, every_s: float) -> list[int]:
    """Terminate every backend of ``names`` each ``every_s`` until ``stop``; returns the counts per round."""
    rounds: list[int] = []
    conn = await asyncpg.connect(admin_dsn)
    try:
        while not stop.is_set():
            killed = await conn.fetchval(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = ANY($1::text[]) AND pid <> pg_backend_pid()) AS t", names)
            rounds.append(int(killed))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=every_s)
    finally:
        await conn.close()
    return rounds


async def _clean(cluster: Cluster, ids: set[str], statuses: TopicReader, outcomes: TopicReader) -> Audit | None:
    found = await audit(cluster, ids, statuses.events, outcomes.events)
    return found if not found.problems else None


async def test_terminated_backends_roll_back_and_retry_and_nothing_applies_twice(
    tmp_path: Path, pg_admin_dsn: str
) -> None:
    events = contact_requests(uuid.uuid4().hex[:6], REQUESTS)
    ids = {e.id for e in events}
    async with databases(pg_admin_dsn, "orchestrator", "sms") as urls, \
            running_cluster(tmp_path, databases=urls) as cluster:
        topics = Topics(cluster.kafka.topic_prefix)
        async with TopicReader(cluster.kafka, topics.contact_status) as statuses, \
                TopicReader(cluster.kafka, topics.contact_outcomes) as outcomes:
            stop = asyncio.Event()
            names = [url.rsplit("/", 1)[1] for url in urls.values()]
            killer = asyncio.create_task(terminate(pg_admin_dsn, names, stop, EVERY_S))
            try:
                await publish(cluster.kafka, events, SECONDS)

                def all_settled() -> bool:
                    last = last_statuses(statuses.events)
                    return all(r in last and settled(last[r].status, last[r].not_before) for r in ids)

                await wait_for(all_settled, timeout=240, interval=0.5, what="every request terminal")
            finally:
                stop.set()
                rounds = await killer
            found = await wait_for(lambda: _clean(cluster, ids, statuses, outcomes), timeout=120, interval=2,
                                   what="the ledger, topics and sandbox to agree")
            twice: dict[str, Any] = {
                "outcome events applied twice": await cluster.query(
                    "orchestrator", "SELECT event_id FROM outcomes GROUP BY event_id HAVING count(*) > 1"),
                "requests dispatched twice": await cluster.query(
                    "orchestrator", "SELECT request_id FROM dispatches GROUP BY request_id HAVING count(*) > 1"),
            }
    figures = {**found.figures(), "termination_rounds": len(rounds), "backends_terminated": sum(rounds)}
    print("postgresql connection drops:", figures)  # noqa: T201 - the figures of the run (-s)
    assert sum(rounds) >= 10, "too few backends were terminated to prove anything"
    assert not any(twice.values()), twice
    assert figures["duplicates"] == 0
    assert sum(figures["ledger"].values()) == REQUESTS
