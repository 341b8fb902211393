"""Crashes: SIGKILL every service at random moments of a campaign; nothing is lost or sent twice.

The orchestrator, SMS, email and voice services run as ``cadencia serve`` processes under
``cadencia run``'s supervisor (``tests/reliability/cluster.py``), with the sandbox as the providers.
While a campaign goes through them, seeded random moments (fractions of the requests settled) SIGKILL
one service each — the orchestrator twice, every other service at least once — and the supervisor
restarts it. Afterwards every request is terminal, no dispatch reached the provider twice, every
send whose answer was lost is ``unknown``, and the ledger, the status topic and the sandbox agree.

``CADENCIA_CRASH_REQUESTS`` sets the campaign's size (``make soak``: 2,000), ``CADENCIA_CRASH_SEED``
the kill moments. The figures are printed (``-s``).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
import uuid
from pathlib import Path

import pytest

from shared.events import Topics
from tests.helpers import TopicReader, wait_for
from tests.reliability.campaign import Audit, audit, contact_requests, last_statuses, publish, settled
from tests.reliability.cluster import Cluster, running_cluster

REQUESTS = int(os.environ.get("CADENCIA_CRASH_REQUESTS", "400"))
#: The requests trickle in over this many seconds; the kills fall at seeded moments within them.
SECONDS = float(os.environ.get("CADENCIA_CRASH_SECONDS", "60"))
SEED = int(os.environ.get("CADENCIA_CRASH_SEED", "14"))
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600 + REQUESTS // 2)]
VICTIMS = ("orchestrator", "orchestrator", "sms", "email", "voice")


def kill_plan(seed: int) -> list[tuple[float, str]]:
    """(seconds into the campaign, service) for each kill, in order; never one service twice in a row
    (it would be killed while still starting)."""
    rng = random.Random(seed)
    order = list(VICTIMS)
    while True:
        rng.shuffle(order)
        if all(a != b for a, b in zip(order, order[1:], strict=False)):
            break
    moments = sorted(rng.uniform(0.05, 0.85) * SECONDS for _ in order)
    return list(zip(moments, order, strict=True))


async def _clean(cluster: Cluster, ids: set[str], statuses: TopicReader, outcomes: TopicReader) -> Audit | None:
    found = await audit(cluster, ids, statuses.events, outcomes.events)
    return found if not found.problems else None


async def test_sigkill_of_every_service_mid_campaign_loses_nothing_and_sends_nothing_twice(tmp_path: Path) -> None:
    started = time.monotonic()
    events = contact_requests(uuid.uuid4().hex[:6], REQUESTS)
    ids = {e.id for e in events}
    plan = kill_plan(SEED)
    async with running_cluster(tmp_path) as cluster:
        topics = Topics(cluster.kafka.topic_prefix)
        async with TopicReader(cluster.kafka, topics.contact_status) as statuses, \
                TopicReader(cluster.kafka, topics.contact_outcomes) as outcomes:

            def settled_share() -> float:
                last = last_statuses(statuses.events)
                return sum(1 for r in ids if r in last and settled(last[r].status, last[r].not_before)) / len(ids)

            # Slow provider answers (0.1-1 s), so a kill finds requests on the wire.
            response = await cluster.http.put(f"{cluster.sandbox_url}/sandbox/faults", json={
                "latency": {"kind": "uniform", "min_ms": 100, "max_ms": 1000}})
            response.raise_for_status()
            publishing = asyncio.create_task(publish(cluster.kafka, events, SECONDS))
            begun = time.monotonic()
            at_kill: list[tuple[str, float]] = []
            for moment, victim in plan:
                delay = begun + moment - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)  # the seeded moment of the kill, not a wait for a result
                at_kill.append((victim, round(settled_share(), 3)))
                cluster.kill(victim)
                await cluster.wait_ready([victim], timeout=120)  # restarted by the supervisor
            await publishing
            await wait_for(lambda: settled_share() == 1.0, timeout=300, interval=0.5,
                           what="every request terminal on the status topic")
            # Late outcomes (unknown reports after a restart, reconciled deliveries) settle the rest.
            found: Audit | None = None
            try:
                found = await wait_for(lambda: _clean(cluster, ids, statuses, outcomes), timeout=120,
                                       interval=2, what="the ledger, topics and sandbox to agree")
            finally:
                if found is None:
                    last = await audit(cluster, ids, statuses.events, outcomes.events)
                    print(json.dumps(last.figures()), last.problems)  # noqa: T201 - why it failed
        kills = dict(cluster.kills)
    figures = {**found.figures(), "kills": kills, "settled_at_kill": at_kill,
               "seconds": round(time.monotonic() - started, 1)}
    print("crash campaign:", json.dumps(figures))  # noqa: T201 - the figures of the run (-s)
    # Every kill hit a campaign still under way, every service at least once and the orchestrator twice.
    assert all(share < 1.0 for _, share in at_kill), at_kill
    assert kills == {"orchestrator": 2, "sms": 1, "email": 1, "voice": 1}
    assert figures["duplicates"] == 0
    assert sum(figures["ledger"].values()) == REQUESTS
