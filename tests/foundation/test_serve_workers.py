"""``cadencia serve <service> --workers N``: N processes in one consumer group behind one port.

On PostgreSQL two SMS workers split the dispatch topic's partitions between them, every dispatch is
sent exactly once (counted by the sandbox), and the provider's callbacks — which land on whichever
worker accepts the connection — still reach every dispatch. On SQLite the command refuses.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from collections import Counter
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from services.sandbox.testing import running_sandbox
from shared.bus import ensure_topics
from shared.config import KafkaSettings
from shared.events import Topics
from shared.events.contracts import DeliveryUpdatedEvent
from tests.channel_harness import Publisher, dispatch_event, free_port, template_event
from tests.helpers import TopicReader, wait_for

ROOT = Path(__file__).resolve().parents[2]
ASSIGNED = re.compile(r"partitions assigned\s.*consumer=sms-dispatch\s.*count=(\d+)\s.*worker=(\d+)")


def _sms_env(kafka: KafkaSettings, database_url: str, sandbox_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "CADENCIA_TOPIC_PREFIX": kafka.topic_prefix,
        "KAFKA_PARTITIONS": str(kafka.partitions),
        "SMS_DATABASE_URL": database_url,
        "TWILIO_API_BASE_URL": sandbox_url,
        "CADENCIA_ORCHESTRATOR_URL": "http://127.0.0.1:9",  # templates come from the topic
        "CADENCIA_SMS_CONSUMER_GROUP": f"{kafka.topic_prefix}sms",
        "CADENCIA_SMS_KAFKA__SESSION_TIMEOUT_MS": "6000",
        "CADENCIA_SMS_KAFKA__HEARTBEAT_INTERVAL_MS": "500",
        "CADENCIA_SMS_SENDER__MPS": "1000",
        "CADENCIA_SMS_SENDER__BURST": "100",
        "CADENCIA_SMS_LOG_LEVEL": "INFO",
        "PYTHONUNBUFFERED": "1",
    }


def _assignments(log: Path) -> dict[int, int]:
    """Each worker's latest count of dispatch partitions, from its ``partitions assigned`` log lines."""
    latest: dict[int, int] = {}
    for match in ASSIGNED.finditer(log.read_text(errors="replace")):
        latest[int(match.group(2))] = int(match.group(1))
    return latest


async def _group_members(kafka: KafkaSettings, group: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka.bootstrap_servers)
    await admin.start()
    try:
        (response,) = await admin.describe_consumer_groups([group])
        (described,) = response.groups
        return len(described[5]) if described[2] == "Stable" else 0  # (error, group, state, type, protocol, members)
    finally:
        await admin.close()


@pytest.mark.postgres
@pytest.mark.timeout(240)
async def test_two_sms_workers_share_the_dispatch_partitions_and_send_each_dispatch_once(
    kafka_settings: KafkaSettings, pg_database_url: str, tmp_path: Path
) -> None:
    topics = Topics(kafka_settings.topic_prefix)
    await ensure_topics(kafka_settings)
    log = tmp_path / "sms.log"
    async with running_sandbox() as sandbox, Publisher(kafka_settings) as publish, \
            TopicReader(kafka_settings, topics.contact_outcomes) as outcomes:
        await publish.template(template_event("workers", "sms"))
        port = free_port()
        with open(log, "wb") as out:
            parent = subprocess.Popen(
                [sys.executable, "-m", "tooling.cli", "serve", "sms", "--workers", "2", "--port", str(port)],
                cwd=ROOT, env=_sms_env(kafka_settings, pg_database_url, sandbox.url), stdout=out, stderr=out,
            )
        try:
            # Both workers joined the one group and hold some of the dispatch partitions each.
            def sharing() -> dict[int, int] | None:
                latest = _assignments(log)
                both = len(latest) == 2 and min(latest.values()) >= 1
                return latest if both and sum(latest.values()) == kafka_settings.partitions else None

            shared = await wait_for(sharing, timeout=120, interval=0.2, what="two workers sharing the partitions")
            assert sorted(shared) == [0, 1]
            assert await _group_members(kafka_settings, f"{kafka_settings.topic_prefix}sms") == 2

            numbers = [f"+52155{n:05d}0009" for n in range(30)]  # one debtor each: spread over partitions
            dispatches = [dispatch_event("sms", to, "workers", debtor_id=f"w-{uuid.uuid4().hex[:8]}")
                          for to in numbers]
            for event in dispatches:
                await publish.dispatch(event)

            ids = {e.data.dispatch_id for e in dispatches}

            def reached(status: str) -> set[str]:
                return {e.data.dispatch_id for e in outcomes.events
                        if isinstance(e, DeliveryUpdatedEvent) and e.data.status == status} & ids

            await wait_for(lambda: reached("sent") == ids, timeout=60, what="every dispatch sent")
            # The sandbox's callbacks land on either worker; the shared database finds every dispatch.
            await wait_for(lambda: reached("delivered") == ids, timeout=60, what="every dispatch delivered")
            sent = [r for r in await sandbox.requests(provider="twilio") if r["path"].endswith("/Messages.json")]
            per_number = Counter(r["form"]["To"] for r in sent)
            assert per_number == Counter(numbers)  # each number exactly once, nothing else
            assert parent.poll() is None, log.read_text(errors="replace")[-3000:]
        finally:
            if parent.poll() is None:
                parent.send_signal(signal.SIGTERM)
            try:
                parent.wait(timeout=60)
            except subprocess.TimeoutExpired:
                parent.kill()
                raise
    assert parent.returncode == 0, log.read_text(errors="replace")[-3000:]
    stopped = log.read_text(errors="replace")
    assert "workers stopped" in stopped


@pytest.mark.postgres
@pytest.mark.timeout(180)
async def test_a_worker_that_dies_takes_the_set_down_so_the_outer_supervisor_restarts_it(
    kafka_settings: KafkaSettings, pg_database_url: str, tmp_path: Path
) -> None:
    await ensure_topics(kafka_settings)
    log = tmp_path / "sms.log"
    with open(log, "wb") as out:
        parent = subprocess.Popen(
            [sys.executable, "-m", "tooling.cli", "serve", "sms", "--workers", "2", "--port", str(free_port())],
            cwd=ROOT, env=_sms_env(kafka_settings, pg_database_url, "http://127.0.0.1:9"), stdout=out, stderr=out,
        )
    try:
        await wait_for(lambda: len(_assignments(log)) == 2, timeout=120, interval=0.2, what="both workers consuming")
        started = re.search(r"workers started\s.*pids=\[(\d+), (\d+)\]", log.read_text(errors="replace"))
        assert started is not None
        first, second = int(started.group(1)), int(started.group(2))
        os.kill(first, signal.SIGKILL)
        assert parent.wait(timeout=60) == 128 + signal.SIGKILL
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
    with pytest.raises(ProcessLookupError):  # the other worker was stopped (and reaped) with the set
        os.kill(second, 0)
    assert "worker exited; stopping the others" in log.read_text(errors="replace")


def test_more_than_one_worker_on_sqlite_is_refused_before_anything_starts(tmp_path: Path) -> None:
    database = tmp_path / "sms.db"
    result = subprocess.run(
        [sys.executable, "-m", "tooling.cli", "serve", "sms", "--workers", "2", "--port", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "SMS_DATABASE_URL": f"sqlite+aiosqlite:///{database}",
             "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"},  # nothing listens: it must not even try
    )
    assert result.returncode == 2
    assert "--workers 2 needs PostgreSQL" in result.stderr
    assert "one outbox relay per database file" in result.stderr
    assert not database.exists()


def test_voice_workers_without_redis_are_refused_because_agent_pacing_must_be_shared() -> None:
    env = {k: v for k, v in os.environ.items() if "REDIS_URL" not in k}
    result = subprocess.run(
        [sys.executable, "-m", "tooling.cli", "serve", "voice", "--workers", "2", "--port", "0"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**env, "VOICE_DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1:9/none",
             "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9"},  # nothing listens: it must not even try
    )
    assert result.returncode == 2, result.stderr
    assert "--workers 2 needs REDIS_URL" in result.stderr
    assert "agent pacing" in result.stderr
