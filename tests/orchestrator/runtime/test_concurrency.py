"""Caps under concurrency (two instances, one database) and crash safety (SIGKILL mid-batch)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from services.orchestrator.runtime.models import DispatchRow
from shared.bus import EventProducer
from shared.config import DatabaseSettings, KafkaSettings
from shared.db import Database
from shared.ports import free_port
from tests.helpers import TopicReader, wait_for
from tests.orchestrator.conftest import EDITOR, FakeClock, make_settings, request_event, running

DISPATCHED = "cadencia.contact.dispatched.v1"
ROOT = Path(__file__).resolve().parents[3]

#: Operator limits off, so only the law limits what these tests count.
UNLIMITED_STRATEGY = """
creditor: {name: Financiera Ejemplo, phone: "+18005550100"}
defaults:
  channels: [voice, sms, email, whatsapp]
  min_gap_hours: 0
segments: []
"""


@pytest.fixture
def strategy_path(tmp_path: Path) -> str:
    path = tmp_path / "strategy.yaml"
    path.write_text(UNLIMITED_STRATEGY, encoding="utf-8")
    return str(path)


@pytest.mark.postgres
async def test_two_instances_fed_one_debtors_burst_never_exceed_the_us_call_cap(
    kafka_settings: KafkaSettings, pg_database_url: str, clock: FakeClock, strategy_path: str
) -> None:
    settings = make_settings(kafka_settings, pg_database_url, strategy_path=strategy_path)
    async with running(settings, clock) as a, running(settings, clock, templates=()) as b:
        topics = a.topics
        async with TopicReader(kafka_settings, topics.dispatch("voice")) as reader:
            burst = [request_event("deb-cap", channel="voice", days_past_due=40) for _ in range(24)]
            for event in burst[:8]:  # through Kafka: whichever instance owns the partition
                await a.publish(topics.contact_requests, event)

            async def post(instance, event):
                return await instance.http.post("/v1/contact-requests", json=event.model_dump(mode="json"),
                                                headers=EDITOR)

            responses = await asyncio.gather(*(post(a if i % 2 else b, e) for i, e in enumerate(burst[8:])))
            assert all(r.status_code == 202 for r in responses)

            async def all_decided() -> bool:
                async with a.app.state.ctx.db.sessions() as session:
                    from services.orchestrator.runtime.models import ContactRequestRow

                    n = await session.scalar(select(func.count()).select_from(ContactRequestRow).where(
                        ContactRequestRow.debtor_id == "deb-cap"))
                return n == len(burst)

            await wait_for(all_decided, timeout=30, what="every request decided")
            await reader.wait_count(DISPATCHED, 7)
            async with a.app.state.ctx.db.sessions() as session:
                placed = await session.scalar(select(func.count()).select_from(DispatchRow).where(
                    DispatchRow.debtor_id == "deb-cap", DispatchRow.channel == "voice"))
            assert placed == 7
            statuses = [r.json()["results"][0]["status"] for r in responses]
            assert set(statuses) <= {"dispatched", "deferred"} and statuses.count("deferred") >= 16 - 7
    assert len({e.data.dispatch_id for e in reader.of_type(DISPATCHED)}) == 7


def _lawful_zone_now() -> str:
    """A fixed-offset zone where it is early afternoon right now (the subprocess uses the real clock)."""
    hour = datetime.now(UTC).hour
    offset = ((14 - hour + 12) % 24) - 12  # UTC offset in [-12, 11]
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"  # POSIX sign: Etc/GMT-3 is UTC+3


def _spawn(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "tooling.cli", "serve", "orchestrator"], cwd=ROOT, env=env, stdout=out, stderr=out,
        start_new_session=True,
    )


async def test_killing_the_orchestrator_mid_batch_loses_nothing_and_sends_nothing_twice(
    kafka_settings: KafkaSettings, database_url: str, strategy_path: str, tmp_path: Path
) -> None:
    pg_database_url = database_url  # both databases: SQLite file or a throwaway PostgreSQL database
    # Prepare the database (migrations, templates) in-process, then hand it to a real server process.
    prepare = make_settings(kafka_settings, pg_database_url, consumer_group=f"{kafka_settings.topic_prefix}prepare")
    async with running(prepare, FakeClock()) as o:
        topics = o.topics
    zone = _lawful_zone_now()
    requests = [
        request_event(f"deb-crash-{i % 60}", channel="email", jurisdiction="MX", time_zone=zone, phone=None,
                      currency="MXN")
        for i in range(360)
    ]
    producer = EventProducer(kafka_settings)
    await producer.start()
    try:
        await producer.publish_many([(topics.contact_requests, e) for e in requests])
    finally:
        await producer.stop()

    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "CADENCIA_TOPIC_PREFIX": kafka_settings.topic_prefix,
        "ORCHESTRATOR_DATABASE_URL": pg_database_url,
        "CADENCIA_ORCHESTRATOR_PORT": str(free_port()),
        "CADENCIA_ORCHESTRATOR_STRATEGY_PATH": strategy_path,
        "CADENCIA_ORCHESTRATOR_SEED_TEMPLATES": "false",
        "CADENCIA_ORCHESTRATOR_CONSUMER_GROUP": f"{kafka_settings.topic_prefix}orchestrator",
        # the killed member holds its partitions until its session times out
        "CADENCIA_ORCHESTRATOR_KAFKA__SESSION_TIMEOUT_MS": "3000",
        "CADENCIA_ORCHESTRATOR_KAFKA__HEARTBEAT_INTERVAL_MS": "300",
        "CADENCIA_ORCHESTRATOR_KAFKA__MAX_POLL_RECORDS": "40",
        "CADENCIA_ENV": "test",
        "CADENCIA_API_KEYS": "admin:test-admin-key",
    }
    log = tmp_path / "orchestrator.log"
    process = _spawn(env, log)
    try:
        async with TopicReader(kafka_settings, topics.dispatch("email")) as reader:
            await wait_for(lambda: len(reader.of_type(DISPATCHED)) >= 20, timeout=60, what="first dispatches")
            process.send_signal(signal.SIGKILL)  # no shutdown hooks: mid-batch, offsets uncommitted
            process.wait(timeout=10)
            killed_at = len(reader.of_type(DISPATCHED))
            process = _spawn(env, log)

            def every_request_dispatched() -> bool:
                return {e.data.request_id for e in reader.of_type(DISPATCHED)} >= {r.id for r in requests}

            await wait_for(every_request_dispatched, timeout=90, interval=0.1, what="all requests dispatched")
            by_request: dict[str, set[str]] = defaultdict(set)
            for event in reader.of_type(DISPATCHED):
                by_request[event.data.request_id].add(event.data.dispatch_id)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    assert killed_at < len(requests), "the kill should land mid-batch"
    assert set(by_request) == {r.id for r in requests}
    assert {rid: ids for rid, ids in by_request.items() if len(ids) != 1} == {}
    db = Database(DatabaseSettings(url=pg_database_url))
    try:
        async with db.sessions() as session:
            assert await session.scalar(select(func.count()).select_from(DispatchRow)) == len(requests)
    finally:
        await db.dispose()
