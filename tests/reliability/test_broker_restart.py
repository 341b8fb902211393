"""Crashes: the broker dies mid-campaign and a fresh, empty one takes its port.

Meanwhile the services keep committing to their databases — the providers' delivery callbacks reach
the channel services, a backend submits requests over the orchestrator's HTTP API — and report
not-ready. Once the new broker listens they re-create the topics, reconnect, report ready, and their
outboxes publish what they committed: every such request ends delivered, none is sent twice.

What the dead broker had acknowledged but nobody had consumed yet is that broker's loss (memory
storage); the test makes no promise about it and keeps none of it in flight at the kill: the sandbox
holds its delivery reports (``hold_callbacks``) until the broker is gone, and the kill waits for the
orchestrator to have consumed every acceptance the channels published.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from shared.events import Topics
from tests.helpers import wait_for
from tests.reliability.campaign import Audit, audit, contact_requests, publish
from tests.reliability.cluster import SERVICES, Cluster, running_cluster

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(600),
]

EDITOR = {"Authorization": "Bearer dev-admin-key"}


async def _hold_callbacks(cluster: Cluster, hold: bool) -> None:
    response = await cluster.http.put(f"{cluster.sandbox_url}/sandbox/faults", json={"hold_callbacks": hold},
                                      timeout=60)
    assert response.status_code == 200, response.text


async def _acceptances_consumed(cluster: Cluster, count: int) -> bool:
    """The orchestrator has every dispatch at ``accepted``: it consumed what the channels reported so far."""
    rows = await cluster.query("orchestrator", "SELECT status, count(*) FROM dispatches GROUP BY status")
    return dict(rows) == {"accepted": count}


async def _reached_provider(cluster: Cluster, count: int) -> bool:
    posts = [r for r in await cluster.sandbox_requests() if r["method"] == "POST" and 200 <= r["status"] < 300]
    return len(posts) >= count


async def _delivered_in_send_logs(cluster: Cluster) -> int:
    total = 0
    for channel in ("sms", "email"):
        rows = await cluster.query(channel, "SELECT count(*) FROM send_log WHERE status = 'delivered'")
        total += rows[0][0]
    return total


async def _delivered(cluster: Cluster, count: int) -> bool:
    return await _delivered_in_send_logs(cluster) >= count


async def _topics_on(cluster: Cluster) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=cluster.kafka.bootstrap_servers)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def _all_not_ready(cluster: Cluster) -> bool:
    return not any([await cluster.is_ready(name) for name in SERVICES])


async def _clean(cluster: Cluster, ids: set[str], last: list[Audit]) -> Audit | None:
    """The audit of ``ids`` once it finds no problem; ``last`` keeps the latest one for the failure message."""
    found = await audit(cluster, ids, None, [])
    last[:] = [found]
    return found if not found.problems else None


async def test_a_fresh_broker_gets_everything_the_services_committed_meanwhile(tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:6]
    # Email and SMS only: their deliveries are the callbacks that arrive while the broker is away.
    before = [e for e in contact_requests(f"{run}b", 40) if e.data.channel != "voice"]
    during = [e for e in contact_requests(f"{run}d", 40) if e.data.channel != "voice"]
    async with running_cluster(tmp_path) as cluster:
        await _hold_callbacks(cluster, True)
        await publish(cluster.kafka, before)
        # Every request sent and its acceptance consumed, every delivery report held by the provider:
        # nothing unconsumed is left on the broker.
        await wait_for(lambda: _reached_provider(cluster, len(before)), timeout=120, interval=0.2,
                       what="every request of the first batch at the provider")
        await wait_for(lambda: _acceptances_consumed(cluster, len(before)), timeout=120, interval=0.2,
                       what="every acceptance consumed by the orchestrator")
        assert await _delivered_in_send_logs(cluster) == 0
        cluster.stop_broker()
        await wait_for(lambda: _all_not_ready(cluster), timeout=60, interval=0.2,
                       what="every service not ready without its broker")
        # Committed while the broker is away: the deliveries (channels) and new requests (orchestrator).
        await _hold_callbacks(cluster, False)
        await wait_for(lambda: _delivered_in_send_logs(cluster), timeout=60, interval=0.2,
                       what="deliveries recorded by the channels")
        response = await cluster.http.post(
            f"{cluster.services['orchestrator'].url}/v1/contact-requests", headers=EDITOR, timeout=60,
            json={"requests": [e.model_dump(mode="json") for e in during]})
        assert response.status_code == 202, response.text
        await wait_for(lambda: _delivered(cluster, len(before)), timeout=60, interval=0.2,
                       what="every delivery of the first batch recorded by the channels")
        assert await _all_not_ready(cluster)

        cluster.broker.start(timeout=60)  # the same port, no topics, no offsets
        await cluster.wait_ready(timeout=120)
        ids = {e.id for e in before + during}
        last: list[Audit] = []
        try:
            found = await wait_for(lambda: _clean(cluster, ids, last), timeout=120, interval=1,
                                   what="every committed request delivered, once")
        except AssertionError as exc:
            seen = (last[0].problems, last[0].figures()) if last else None
            raise AssertionError(f"{exc}; the last audit's problems and figures: {seen}") from None
        topics = await _topics_on(cluster)
    figures: dict[str, Any] = found.figures()
    print("broker restart:", figures)  # noqa: T201 - the figures of the run (-s)
    assert figures["ledger"] == {"delivered": len(ids)}
    assert figures["duplicates"] == 0
    assert set(Topics(cluster.kafka.topic_prefix).all()) <= topics
