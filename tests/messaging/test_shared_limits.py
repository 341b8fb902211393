"""Per-sender limits shared by replicas through Redis: a GCRA in one Lua script.

Two SMS service processes consuming one dispatch topic on one sender number never exceed the
sender's rate together, measured by the sandbox's receive timestamps."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from services.sandbox.settings import Settings as SandboxSettings
from services.sandbox.testing import SandboxHandle
from shared.channels.ratelimit import SenderLimits
from shared.channels.ratelimit_redis import RedisBucket, RedisSenderLimits
from shared.config import KafkaSettings
from shared.events import Topics
from tests.channel_harness import Publisher, dispatch_event, free_port, template_event, unique_number
from tests.helpers import TopicReader, wait_for

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.redis


@pytest.fixture
async def redis(redis_url: str) -> Any:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def test_two_limiters_on_one_redis_share_each_senders_slots_and_its_pauses(redis: Redis) -> None:
    prefix = f"test:{uuid.uuid4().hex}:"
    # One message every 10 s: whatever the machine's speed, the second slot is never free right away.
    first, second = (RedisSenderLimits(redis, prefix, default_rate=0.1) for _ in range(2))
    assert await first.bucket("+15005550006").acquire(max_wait=0)
    assert not await second.bucket("+15005550006").acquire(max_wait=0)  # the other replica took it
    assert await second.bucket("+15005550007").acquire(max_wait=0)  # another sender has its own bucket
    # The in-process limiter, by contrast, gives each replica the full rate.
    local_a, local_b = SenderLimits(0.1), SenderLimits(0.1)
    assert await local_a.bucket("+15005550006").acquire(max_wait=0)
    assert await local_b.bucket("+15005550006").acquire(max_wait=0)

    # A provider's Retry-After seen by one replica holds the sender for every replica.
    fast = [RedisSenderLimits(redis, prefix, default_rate=1000.0) for _ in range(2)]
    fast[0].bucket("+15005550008").pause(60)
    assert not await fast[0].bucket("+15005550008").acquire(max_wait=0)  # carries the pause to Redis
    bucket = fast[1].bucket("+15005550008")
    assert isinstance(bucket, RedisBucket)
    wait = await bucket.reserve(max_wait=120)
    assert wait is not None and 55 < wait <= 60


async def test_an_unreachable_redis_falls_back_to_the_process_limit() -> None:
    limits = RedisSenderLimits(Redis.from_url(f"redis://127.0.0.1:{free_port()}/0"), "x:", default_rate=0.1)
    try:
        assert await limits.bucket("+15005550006").acquire(max_wait=0)
        assert not await limits.bucket("+15005550006").acquire(max_wait=0)  # the local bucket still limits
        assert limits.fallbacks == 2
    finally:
        await limits.redis.aclose()


def _spawn(env: dict[str, str], log: Path, service: str = "sms") -> subprocess.Popen[bytes]:
    out = log.open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "tooling.cli", "serve", service], cwd=ROOT, env=env, stdout=out, stderr=out,
        start_new_session=True,
    )


def _assigned(log: Path) -> int | None:
    """Partitions the process's dispatch consumer holds now, from its JSON log."""
    count = None
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == "partitions assigned" and entry.get("consumer") == "sms-dispatch":
            count = entry["count"]
    return count


async def test_two_sms_processes_on_one_sender_never_exceed_its_rate_together(
    kafka_settings: KafkaSettings, pg_database_url: str, redis_url: str, publisher: Publisher, tmp_path: Path,
) -> None:
    mps, count = 4.0, 24
    topics = Topics(kafka_settings.topic_prefix)
    await publisher.template(template_event("reminder", "sms"))
    ports = [free_port(), free_port()]
    # The provider (sandbox) in a process of its own: its receive timestamps are the measurement, and
    # this test's own event loop (broker readers, polling) must not delay them.
    sandbox_port = free_port()
    sandbox_url = f"http://127.0.0.1:{sandbox_port}"
    sandbox_settings = SandboxSettings()
    processes = [_spawn({**os.environ, "CADENCIA_ENV": "test", "CADENCIA_SANDBOX_PORT": str(sandbox_port),
                         "CADENCIA_SANDBOX_LOG_LEVEL": "WARNING"}, tmp_path / "sandbox.log", "sandbox")]
    base = {
        **os.environ,
        "CADENCIA_ENV": "test",
        "KAFKA_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "CADENCIA_TOPIC_PREFIX": kafka_settings.topic_prefix,
        "CADENCIA_SMS_KAFKA__PARTITIONS": str(kafka_settings.partitions),
        "CADENCIA_SMS_KAFKA__SESSION_TIMEOUT_MS": "6000",
        "CADENCIA_SMS_KAFKA__HEARTBEAT_INTERVAL_MS": "500",
        "SMS_DATABASE_URL": pg_database_url,  # replicas share their service's database
        "REDIS_URL": redis_url,
        "TWILIO_ACCOUNT_SID": sandbox_settings.twilio.account_sid,
        "TWILIO_AUTH_TOKEN": sandbox_settings.twilio.auth_token.get_secret_value(),
        "TWILIO_API_BASE_URL": sandbox_url,
        "CADENCIA_SMS_SENDER__MPS": str(mps),
        "CADENCIA_SMS_SENDER__BURST": "1",
        "CADENCIA_SMS_CONSUMER_GROUP": f"{kafka_settings.topic_prefix}sms",
        "CADENCIA_SMS_LOG_FORMAT": "json",
        "CADENCIA_SMS_ORCHESTRATOR_URL": "http://127.0.0.1:9",
    }
    # The first replica migrates (development default); the second only checks the schema.
    logs = [tmp_path / "sms-a.log", tmp_path / "sms-b.log"]
    envs = [
        {**base, "CADENCIA_SMS_PORT": str(port), "CADENCIA_SMS_PUBLIC_URL": f"http://127.0.0.1:{port}"}
        for port in ports
    ]
    sandbox_http = httpx.AsyncClient(base_url=sandbox_url, timeout=10)
    sandbox = SandboxHandle(sandbox_url, sandbox_settings, None, sandbox_http)
    try:
        processes.append(_spawn(envs[0], logs[0]))
        async with httpx.AsyncClient(timeout=2) as client:

            async def ready(port: int) -> bool:
                try:
                    return (await client.get(f"http://127.0.0.1:{port}/ready")).status_code == 200
                except httpx.HTTPError:
                    return False

            await wait_for(lambda: ready(sandbox_port), timeout=60, interval=0.2, what="sandbox ready")
            await wait_for(lambda: ready(ports[0]), timeout=60, interval=0.2, what="replica a ready")
            processes.append(_spawn({**envs[1], "CADENCIA_SMS_MIGRATE_ON_START": "false"}, logs[1]))
            await wait_for(lambda: ready(ports[1]), timeout=60, interval=0.2, what="replica b ready")
        # Both replicas hold partitions before the dispatches arrive (the group has settled).
        await wait_for(lambda: (a := _assigned(logs[0])) and (b := _assigned(logs[1])) and a + b == 3,
                       timeout=60, interval=0.2, what="partitions split between the replicas")
        events = [dispatch_event("sms", unique_number("0001"), "reminder") for _ in range(count)]
        async with TopicReader(kafka_settings, topics.contact_outcomes) as outcomes:
            for event in events:
                await publisher.dispatch(event)

            def accepted() -> set[str]:
                # "accepted", or a later status that superseded it (a callback committed before the result).
                return {e.data.dispatch_id for e in outcomes.of_type("cadencia.contact.delivery_updated.v1")
                        if e.data.status in ("accepted", "sent", "delivered")}

            await wait_for(lambda: accepted() >= {e.data.dispatch_id for e in events}, timeout=60, interval=0.1,
                           what="every dispatch accepted")
        sent = [r for r in await sandbox.requests(provider="twilio") if r["path"].endswith("/Messages.json")]
    finally:
        await sandbox_http.aclose()
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    assert len(sent) == count and all(r["status"] == 201 for r in sent)  # each once
    by_replica = {port: [r for r in sent if r["form"]["StatusCallback"].startswith(f"http://127.0.0.1:{port}/")]
                  for port in ports}
    assert all(by_replica.values()), {port: len(rows) for port, rows in by_replica.items()}  # both sent
    stamps = sorted(r["received_ts"] for r in sent)
    busiest = max(sum(1 for t in stamps if start <= t < start + 1.0) for start in stamps)
    assert busiest <= mps + 1, f"{busiest} requests in one second from one {mps:g} msg/s sender"
