"""A consumer never dies silently, and a record that kills its process is dead-lettered, not retried forever.

Finding 1 of issue 11 ended the orchestrator's consumer task with no log line while the process
stayed alive (so nothing restarted it), and after a restart the same record killed it again.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
from fastapi import FastAPI
from structlog.testing import capture_logs

from services.orchestrator.settings import Settings
from shared.app import build_app, fail_service, fatal_hook
from shared.bus import ConsumerRunner, EventProducer, RecordMeta, ensure_topics
from shared.config import DatabaseSettings, KafkaSettings
from shared.db import Database
from shared.db.attempts import ConsumerAttempts
from shared.db.migrate import upgrade
from shared.events import AnyEvent, Topics
from tests.foundation.test_consumer import _committed_total, _effects, _event, _read_line, _spawn
from tests.helpers import TopicReader, wait_for


async def test_an_exception_escaping_the_runner_is_logged_with_its_record_and_the_service_turns_not_ready(
    kafka_settings: KafkaSettings,
) -> None:
    await ensure_topics(kafka_settings)
    topics = Topics(kafka_settings.topic_prefix)
    app: FastAPI = build_app(Settings(env="test"), "t")
    fatal: list[BaseException] = []
    app.state.exit_on_fatal = fatal.append  # what ``cadencia serve`` installs: shut down, exit 70
    producer, dead_letters = EventProducer(kafka_settings), EventProducer(kafka_settings)
    await producer.start()
    await dead_letters.start()
    await dead_letters.stop()  # the broker "went away" for the DLQ publish: it raises

    async def handle(event: AnyEvent, meta: RecordMeta) -> None:
        raise AssertionError("never reached: the record is poison")

    runner = ConsumerRunner(name="crashy", service="test", topics=[topics.account_events],
                            group_id=f"g-{uuid.uuid4()}", kafka=kafka_settings, handler=handle,
                            producer=dead_letters, on_fatal=fatal_hook(app))
    app.state.ready_checks.append(runner.ping)
    try:
        with capture_logs() as logs:
            await runner.start()
            meta = await (await producer.send_raw(topics.account_events, b"{poison", b"deb-1"))
            await wait_for(lambda: fatal, timeout=30, what="on_fatal called")
    finally:
        await runner.stop()
        await producer.stop()
    [crash] = [entry for entry in logs if entry["event"] == "consumer crashed"]
    assert crash["log_level"] == "error" and crash["exc_info"] is True
    assert crash["records"] == [f"{topics.account_events}/{meta.partition}@{meta.offset}"]
    assert runner.failure is fatal[0]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        ready = await client.get("/ready")
    assert ready.status_code == 503
    assert "crashed" in ready.json()["checks"]["ping"] and "fatal" in ready.json()["checks"]


def test_fail_service_without_a_process_hook_only_turns_not_ready() -> None:
    app = build_app(Settings(env="test"), "t")
    fail_service(app, RuntimeError("consumer died"))
    assert isinstance(app.state.fatal, RuntimeError)


async def test_a_record_that_keeps_killing_the_process_is_dead_lettered_and_the_rest_is_applied(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    await ensure_topics(kafka_settings)
    topics = Topics(kafka_settings.topic_prefix)
    topic, group = topics.account_events, f"g-{uuid.uuid4()}"
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'w.db'}"
    events = [_event(i, debtor="deb-1") for i in range(6)]  # one debtor: one key, one partition
    killer = events[2].data.account_id
    producer = EventProducer(kafka_settings)
    await producer.start()
    try:
        for ev in events:
            await producer.publish(topic, ev)
    finally:
        await producer.stop()

    exits = []
    async with TopicReader(kafka_settings, topics.dlq) as dlq:
        # What a supervisor does: restart the process each time it dies. It dies once in its batch,
        # twice on the record alone (``max_crash_attempts``); the next attempt dead-letters it.
        for _ in range(1 + KafkaSettings().max_crash_attempts):
            worker = _spawn(kafka_settings, topic, group, db_url, die_on=killer)
            await _read_line(worker, "DYING")
            exits.append(worker.wait(timeout=30))
        worker = _spawn(kafka_settings, topic, group, db_url, die_on=killer)
        try:
            [letter] = await dlq.wait_count("cadencia.dlq.dead_lettered.v1", 1, timeout=60)
            await wait_for(lambda: _committed_is(kafka_settings, group, topic, len(events)), timeout=30,
                           what="every offset committed")
            await wait_for(lambda: _applied(db_url, 5), timeout=30, what="the other five applied")
        finally:
            worker.terminate()
            exits.append(worker.wait(timeout=30))
    alone = KafkaSettings().max_crash_attempts
    assert exits == [9] * (1 + alone) + [0]  # died on the record (in its batch, then alone), then stopped cleanly
    assert f"crashed the consumer {alone} time(s) when handled alone" in letter.data.error
    assert letter.data.source_topic == topic
    assert letter.data.key == "deb-1"
    applied = await _effects(db_url)
    assert sorted(applied) == sorted(e.id for e in events if e.data.account_id != killer)  # each once
    assert await _committed_total(kafka_settings, group, topic) == len(events)
    db = Database(DatabaseSettings(url=db_url))
    try:
        await upgrade(db, "worker")
        assert await ConsumerAttempts(db).count(group, topic, letter.data.partition) == 1
    finally:
        await db.dispose()


async def _committed_is(kafka: KafkaSettings, group: str, topic: str, n: int) -> bool:
    return await _committed_total(kafka, group, topic) == n


async def _applied(db_url: str, n: int) -> bool:
    return len(await _effects(db_url)) == n


async def test_a_served_service_whose_consumer_crashes_exits_70_for_its_supervisor(
    kafka_settings: KafkaSettings, pg_admin_dsn: str, pg_database_url: str, tmp_path: Path
) -> None:
    import os
    import subprocess
    import sys

    from tests.channel_harness import dispatch_event, free_port
    from tests.conftest import _drop_pg_database
    from tests.foundation.test_consumer import ROOT

    await ensure_topics(kafka_settings)
    topics = Topics(kafka_settings.topic_prefix)
    port = free_port()
    log = tmp_path / "sms.log"
    env = {
        **{k: v for k, v in os.environ.items() if "DATABASE_URL" not in k and "BOOTSTRAP" not in k},
        "PYTHONPATH": str(ROOT), "CADENCIA_ENV": "test",
        "CADENCIA_SMS_KAFKA__BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "CADENCIA_SMS_KAFKA__TOPIC_PREFIX": kafka_settings.topic_prefix,
        "CADENCIA_SMS_DATABASE__URL": pg_database_url,
        "CADENCIA_SMS_CONSUMER_GROUP": f"g-{uuid.uuid4()}",
        "CADENCIA_ORCHESTRATOR_URL": "http://127.0.0.1:9",
    }
    with open(log, "wb") as out:
        service = subprocess.Popen([sys.executable, "-m", "tooling.cli", "serve", "sms", "--port", str(port)],
                                   cwd=ROOT, env=env, stdout=out, stderr=out)
    try:
        async def ready() -> bool:
            try:
                async with httpx.AsyncClient(timeout=2) as http:
                    return (await http.get(f"http://127.0.0.1:{port}/ready")).status_code == 200
            except httpx.HTTPError:
                return False

        await wait_for(ready, timeout=60, interval=0.2, what="sms service ready")
        # Its database disappears under it: the consumer cannot record its attempt and crashes.
        await _drop_pg_database(pg_admin_dsn, pg_database_url.rsplit("/", 1)[1])
        producer = EventProducer(kafka_settings)
        await producer.start()
        try:
            await producer.publish(topics.dispatch("sms"), dispatch_event("sms", "+5215555550001", "reminder"))
        finally:
            await producer.stop()
        await wait_for(lambda: service.poll() is not None, timeout=60, interval=0.2, what="the process exited")
    finally:
        if service.poll() is None:
            service.kill()
            service.wait()
    assert service.returncode == 70
    text = log.read_text()
    assert "consumer crashed" in text and f"{topics.dispatch('sms')}/" in text and "Traceback" in text
