"""The consumer runner against the real broker: DLQ, crash before commit, SIGTERM."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import text

from shared.bus import ConsumerRunner, EventProducer, PermanentError, RecordMeta, ensure_topics
from shared.config import DatabaseSettings, KafkaSettings
from shared.db import Database
from shared.events import AnyEvent, Topics, encode_event
from shared.events.contracts import PromiseBroken, PromiseBrokenEvent
from tests.helpers import TopicReader, wait_for

ROOT = Path(__file__).resolve().parents[2]


def _event(n: int, debtor: str = "deb-1") -> PromiseBrokenEvent:
    return PromiseBrokenEvent(subject=debtor, data=PromiseBroken(debtor_id=debtor, account_id=f"acc-{n}"))


async def test_poison_goes_to_the_dlq_with_its_reason_and_the_next_message_is_processed(
    kafka_settings: KafkaSettings,
) -> None:
    await ensure_topics(kafka_settings)
    topics = Topics(kafka_settings.topic_prefix)
    producer = EventProducer(kafka_settings)
    await producer.start()
    handled: list[str] = []

    async def handle(event: AnyEvent, meta: RecordMeta) -> None:
        if getattr(event.data, "account_id", "") == "acc-refused":
            raise PermanentError("account unknown to this handler")
        handled.append(event.data.account_id)  # type: ignore[union-attr]

    runner = ConsumerRunner(name="t", service="test", topics=[topics.account_events], group_id=f"g-{uuid.uuid4()}",
                            kafka=kafka_settings, handler=handle, producer=producer,
                            accept_types={"cadencia.account.promise_broken.v1"})
    try:
        async with TopicReader(kafka_settings, topics.dlq) as dlq:
            await runner.start()
            key = b"deb-1"
            for value in (b"{not json", b'{"specversion":"1.0","type":"cadencia.account.promise_broken.v1"}'):
                await (await producer.send_raw(topics.account_events, value, key))
            await producer.publish(topics.account_events, _event(0).model_copy(update={
                "data": PromiseBroken(debtor_id="deb-1", account_id="acc-refused")}))
            await producer.publish(topics.account_events, _event(1))
            await wait_for(lambda: handled == ["acc-1"], what="the message after the poison")
            await wait_for(lambda: len(dlq.events) == 3, what="three dead letters")
    finally:
        await runner.stop()
        await producer.stop()
    letters = [e.data for e in dlq.events]
    assert [base64.b64decode(d.value_b64) for d in letters[:2]] == [
        b"{not json", b'{"specversion":"1.0","type":"cadencia.account.promise_broken.v1"}']
    assert "JSONDecodeError" in letters[0].error
    assert "subject" in letters[1].error and "Field required" in letters[1].error
    assert "account unknown" in letters[2].error
    assert all(d.source_topic == topics.account_events and d.key == "deb-1" for d in letters)
    assert all(d.service == "test" for d in letters)


def _spawn(kafka: KafkaSettings, topic: str, group: str, db_url: str, hang_after: str = "",
           die_on: str = "") -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "tests.foundation.worker", "--bootstrap", kafka.bootstrap_servers,
            "--prefix", kafka.topic_prefix, "--topic", topic, "--group", group, "--db", db_url]
    if hang_after:
        args += ["--hang-after", hang_after]
    if die_on:
        args += ["--die-on", die_on]
    return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})


async def _read_line(proc: subprocess.Popen[str], prefix: str, timeout: float = 30) -> str:
    assert proc.stdout is not None
    stdout = proc.stdout

    async def read() -> str:
        while True:
            line = await asyncio.to_thread(stdout.readline)
            if not line:
                raise AssertionError(f"worker exited before printing {prefix!r}")
            if line.startswith(prefix):
                return line.strip()

    return await asyncio.wait_for(read(), timeout)


async def _effects(db_url: str) -> list[str]:
    db = Database(DatabaseSettings(url=db_url))
    try:
        async with db.sessions() as session:
            rows = await session.execute(text("SELECT event_id FROM effects"))
            return [r[0] for r in rows]
    finally:
        await db.dispose()


async def test_killed_after_effects_before_commit_rereads_and_changes_nothing(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    await ensure_topics(kafka_settings)
    topic = Topics(kafka_settings.topic_prefix).account_events
    group, db_url = f"g-{uuid.uuid4()}", f"sqlite+aiosqlite:///{tmp_path / 'w.db'}"
    events = [_event(i) for i in range(10)]
    producer = EventProducer(kafka_settings)
    await producer.start()
    try:
        for ev in events:
            await producer.publish(topic, ev)
    finally:
        await producer.stop()

    worker = _spawn(kafka_settings, topic, group, db_url, hang_after=events[-1].id)
    try:
        await _read_line(worker, "EFFECTS-DONE")
    finally:
        worker.kill()  # SIGKILL: no chance to commit offsets
        worker.wait()
    before = await _effects(db_url)
    assert sorted(before) == sorted(e.id for e in events)

    worker = _spawn(kafka_settings, topic, group, db_url)
    try:
        await _read_line(worker, "READY")
        # The restarted worker re-reads the uncommitted batch (one record at a time, committing after
        # each, since it was cut short); the inbox makes it change nothing.
        async def all_committed() -> bool:
            return await _committed_total(kafka_settings, group, topic) == len(events)

        await wait_for(all_committed, timeout=30, what="offsets committed by the restarted worker")
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    after = await _effects(db_url)
    assert sorted(after) == sorted(before)  # same rows, none twice


async def _committed_total(kafka: KafkaSettings, group: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka.bootstrap_servers, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        total = 0
        for partition in range(kafka.partitions):
            offset = await consumer.committed(TopicPartition(topic, partition))
            total += offset or 0
        return total
    finally:
        await consumer.stop()


async def test_sigterm_finishes_the_batch_commits_and_exits_cleanly(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    await ensure_topics(kafka_settings)
    topic = Topics(kafka_settings.topic_prefix).account_events
    group, db_url = f"g-{uuid.uuid4()}", f"sqlite+aiosqlite:///{tmp_path / 'w.db'}"
    worker = _spawn(kafka_settings, topic, group, db_url)
    producer = EventProducer(kafka_settings)
    await producer.start()
    try:
        await _read_line(worker, "READY")
        events = [_event(i, debtor=f"deb-{i % 5}") for i in range(50)]
        for ev in events:
            await producer.publish(topic, ev)

        async def applied() -> bool:
            return len(await _effects(db_url)) == len(events)

        await wait_for(applied, timeout=30, what="all events applied")
        worker.send_signal(signal.SIGTERM)
        line = await _read_line(worker, "STOPPED")
        assert worker.wait(timeout=30) == 0
        assert line == f"STOPPED handled={len(events)}"
    finally:
        await producer.stop()
        if worker.poll() is None:
            worker.kill()
    assert await _committed_total(kafka_settings, group, topic) == len(events)


async def test_one_partition_runs_debtors_concurrently_but_each_debtor_in_order(
    kafka_settings: KafkaSettings,
) -> None:
    single = kafka_settings.model_copy(update={"partitions": 1})
    topic = Topics(single.topic_prefix).account_events
    await ensure_topics(single, [topic, Topics(single.topic_prefix).dlq])
    producer = EventProducer(single)
    await producer.start()
    seen: dict[str, list[str]] = {"deb-a": [], "deb-b": []}
    b_started = asyncio.Event()
    in_flight = max_in_flight = 0

    async def handle(event: AnyEvent, meta: RecordMeta) -> None:
        nonlocal in_flight, max_in_flight
        in_flight += 1
        max_in_flight = max(max_in_flight, in_flight)
        try:
            debtor = event.subject
            if debtor == "deb-b":
                b_started.set()
            elif not seen["deb-a"]:
                # deb-a's first event cannot finish until deb-b's work has begun: only possible
                # when both debtors run concurrently within the one partition.
                await asyncio.wait_for(b_started.wait(), timeout=10)
            seen[debtor].append(event.data.account_id)  # type: ignore[union-attr]
        finally:
            in_flight -= 1

    runner = ConsumerRunner(name="order", service="test", topics=[topic], group_id=f"g-{uuid.uuid4()}",
                            kafka=single, handler=handle, producer=producer)
    try:
        for i in range(20):
            await producer.publish(topic, _event(i, debtor="deb-a" if i % 2 == 0 else "deb-b"))
        await runner.start()
        await wait_for(lambda: len(seen["deb-a"]) + len(seen["deb-b"]) == 20, what="all handled")
    finally:
        await runner.stop()
        await producer.stop()
    assert seen["deb-a"] == [f"acc-{i}" for i in range(0, 20, 2)]
    assert seen["deb-b"] == [f"acc-{i}" for i in range(1, 20, 2)]
    assert max_in_flight == 2
    assert runner.dead_lettered == 0


async def test_batch_mode_applies_a_batch_whole_and_isolates_a_poison_record_by_falling_back(
    kafka_settings: KafkaSettings,
) -> None:
    """A batch handler sees many records per call; when it fails, the records are handled one by one,
    the poison is dead-lettered with its reason and its neighbours still apply, each exactly once."""
    await ensure_topics(kafka_settings)
    topics = Topics(kafka_settings.topic_prefix)
    producer = EventProducer(kafka_settings)
    await producer.start()
    batch_sizes: list[int] = []
    applied: list[str] = []

    async def handle(event: AnyEvent, meta: RecordMeta) -> None:
        account = event.data.account_id  # type: ignore[union-attr]
        if account == "acc-poison":
            raise PermanentError("this account cannot be applied")
        applied.append(account)

    async def handle_batch(items: list[tuple[AnyEvent, RecordMeta]]) -> None:
        accounts = [event.data.account_id for event, _ in items]  # type: ignore[union-attr]
        if "acc-poison" in accounts:
            raise ValueError("one record of the batch is bad")  # all or nothing: nothing applied
        batch_sizes.append(len(items))
        applied.extend(accounts)

    # The records are on the topic before the runner starts, so its first fetch returns many at once.
    for i in range(50):
        await producer.publish(topics.account_events, _event(i, debtor=f"deb-{i % 7}"))
    runner = ConsumerRunner(name="t", service="test", topics=[topics.account_events], group_id=f"g-{uuid.uuid4()}",
                            kafka=kafka_settings, handler=handle, producer=producer, batch_handler=handle_batch,
                            accept_types={"cadencia.account.promise_broken.v1"})
    try:
        async with TopicReader(kafka_settings, topics.dlq) as dlq:
            await runner.start()
            await wait_for(lambda: len(applied) == 50, what="the first 50 records")
            await producer.send_raw(topics.account_events, b"{not json", b"deb-1")
            await producer.publish(topics.account_events, _event(0, "deb-2").model_copy(update={
                "data": PromiseBroken(debtor_id="deb-2", account_id="acc-poison")}))
            for i in range(50, 60):
                await producer.publish(topics.account_events, _event(i, debtor=f"deb-{i % 7}"))
            await wait_for(lambda: len(applied) == 60 and len(dlq.events) == 2, what="the rest, and two letters")
    finally:
        await runner.stop()
        await producer.stop()
    assert max(batch_sizes) > 1, batch_sizes  # really batched
    assert sorted(applied) == sorted(f"acc-{i}" for i in range(60))  # each applied once, none lost
    # The two letters come from different partitions: their order on the dead-letter topic is not fixed.
    reasons = [letter.data.error for letter in dlq.events]
    assert len(reasons) == 2
    assert any("JSONDecodeError" in r for r in reasons) and any("cannot be applied" in r for r in reasons)
    assert runner.batches >= 1


async def test_a_quiet_consumer_long_polls_longer_and_still_takes_the_next_record(
    kafka_settings: KafkaSettings,
) -> None:
    await ensure_topics(kafka_settings)
    topic = Topics(kafka_settings.topic_prefix).account_events
    producer = EventProducer(kafka_settings)
    await producer.start()
    handled: list[tuple[str, int]] = []

    def fetch_wait() -> int:  # what each fetch the consumer sends asks the broker to wait
        return int(runner._consumer._fetcher._fetch_max_wait_ms)

    async def handle(event: AnyEvent, meta: RecordMeta) -> None:
        handled.append((event.id, fetch_wait()))

    runner = ConsumerRunner(name="t", service="test", topics=[topic], group_id=f"g-{uuid.uuid4()}",
                            kafka=kafka_settings, handler=handle, producer=producer)
    try:
        await runner.start()
        await wait_for(lambda: fetch_wait() == kafka_settings.quiet_fetch_max_wait_ms, what="the quiet wait")
        first = _event(1)
        await producer.publish(topic, first)
        # Taken after the quiet spell, and handled with the short wait back: records came again.
        await wait_for(lambda: handled, what="the record after the quiet spell")
        assert handled == [(first.id, kafka_settings.fetch_max_wait_ms)]
    finally:
        await runner.stop()
        await producer.stop()


async def _recording_batches(kafka: KafkaSettings) -> tuple[str, EventProducer, ConsumerRunner, list[list[str]]]:
    """A started producer and a (not yet started) batch consumer of the account events topic that records
    the event ids of every batch (a record alone, on the fallback path, as a batch of one)."""
    await ensure_topics(kafka)
    topic = Topics(kafka.topic_prefix).account_events
    producer = EventProducer(kafka)
    await producer.start()
    batches: list[list[str]] = []

    async def handle(event: AnyEvent, meta: RecordMeta) -> None:
        batches.append([event.id])

    async def handle_batch(items: list[tuple[AnyEvent, RecordMeta]]) -> None:
        batches.append([event.id for event, _ in items])

    runner = ConsumerRunner(name="t", service="test", topics=[topic], group_id=f"g-{uuid.uuid4()}",
                            kafka=kafka, handler=handle, producer=producer, batch_handler=handle_batch)
    return topic, producer, runner, batches


@pytest.mark.parametrize(("linger_ms", "flowing"), [(0, True), (1500, True), (1500, False)])
async def test_a_small_fetch_of_a_stream_lingers_once_for_the_records_that_follow_it(
    kafka_settings: KafkaSettings, linger_ms: int, flowing: bool
) -> None:
    """With ``kafka.batch_linger_ms``, while records flow (one came in the last
    ``batch_linger_flowing_ms``), a batch handler gets a fetch of one record together with the records
    published while it lingered, in partition order; without it, or for the first record after a
    pause (here: the consumer's first), the record alone."""
    kafka = kafka_settings.model_copy(update={"batch_linger_ms": linger_ms, "batch_linger_flowing_ms": 60_000})
    topic, producer, runner, batches = await _recording_batches(kafka)

    async def fetched() -> int:  # records the consumer has taken from the topic, over its partitions
        return sum([await runner._consumer.position(tp) for tp in runner.assignment])

    lead, first, *rest = [_event(i) for i in range(4)]  # one debtor: one partition, in this order
    try:
        await runner.start()
        await wait_for(lambda: runner.assignment, what="partitions assigned")
        if flowing:  # a record handled just before: the stream is flowing
            await producer.publish(topic, lead)
            await wait_for(lambda: batches == [[lead.id]], what="the lead record handled")
        before = await fetched()
        await producer.publish(topic, first)

        async def first_fetched() -> bool:
            return await fetched() > before

        await wait_for(first_fetched, what="the first record fetched")
        for event in rest:  # published after the first was fetched: while it lingers, if it does
            await producer.publish(topic, event)
        await wait_for(lambda: sum(map(len, batches)) == 3 + flowing, what="every record handled")
    finally:
        await runner.stop()
        await producer.stop()
    if flowing:
        assert batches.pop(0) == [lead.id]
    ids = [e.id for e in (first, *rest)]
    assert [i for batch in batches for i in batch] == ids, (batches, ids)
    if linger_ms and flowing:
        assert batches == [ids], batches  # one batch: the first record and the two that followed it
    else:
        assert batches[0] == ids[:1], batches  # the first record alone


async def test_a_lingering_batch_never_grows_past_max_poll_records(kafka_settings: KafkaSettings) -> None:
    """A consumer whose ``max_poll_records`` is below ``batch_linger_below`` (a paced channel's small
    batches) lingers for no more than a batch holds: every record handled, no batch over the limit, and
    the consumer alive (a full fetch once asked aiokafka for zero records, which crashes it)."""
    kafka = kafka_settings.model_copy(update={"batch_linger_ms": 1500, "batch_linger_flowing_ms": 60_000,
                                               "max_poll_records": 2})
    topic, producer, runner, batches = await _recording_batches(kafka)
    events = [_event(i) for i in range(7)]  # one debtor: one partition, in this order
    try:
        await runner.start()
        await wait_for(lambda: runner.assignment, what="partitions assigned")
        await producer.publish(topic, events[0])
        await wait_for(lambda: batches, what="the first record handled: records flow")
        await producer.publish_many([(topic, e) for e in events[1:]])
        await wait_for(lambda: sum(map(len, batches)) == len(events), what="every record handled")
        await runner.ping()  # raises once the consumer has crashed
    finally:
        await runner.stop()
        await producer.stop()
    assert [i for batch in batches for i in batch] == [e.id for e in events]
    assert max(map(len, batches)) <= 2, batches


async def test_a_backlog_on_one_topic_does_not_hold_back_the_records_of_another(
    kafka_settings: KafkaSettings,
) -> None:
    """A consumer of several topics takes from every partition that has records in each batch: the
    records of a topic published behind a large backlog on another (delivery outcomes behind a
    morning's contact requests, an opt-out reply among them) are handled in the next batch, not
    after the whole backlog. Every record is still handled once, each partition in order."""
    await ensure_topics(kafka_settings)
    topics = Topics(kafka_settings.topic_prefix)
    backlog_topic, other_topic = topics.account_events, topics.contact_outcomes
    producer = EventProducer(kafka_settings)
    await producer.start()
    backlog = [_event(i, debtor=f"deb-{i % 40}") for i in range(3000)]
    others = [_event(10_000 + i, debtor=f"deb-{i}") for i in range(6)]
    handled: list[tuple[str, str, int, int]] = []  # (topic, event id, partition, offset)
    first_batch_in = asyncio.Event()
    go_on = asyncio.Event()

    async def handle(event: AnyEvent, meta: RecordMeta) -> None:
        handled.append((meta.topic, event.id, meta.partition, meta.offset))

    async def handle_batch(items: list[tuple[AnyEvent, RecordMeta]]) -> None:
        if not first_batch_in.is_set():  # hold the first batch until the other topic's records are fetched
            first_batch_in.set()
            await go_on.wait()
        handled.extend((meta.topic, event.id, meta.partition, meta.offset) for event, meta in items)

    futures = [await producer.send_raw(backlog_topic, encode_event(e), e.key) for e in backlog]
    await asyncio.gather(*futures)
    runner = ConsumerRunner(name="t", service="test", topics=[backlog_topic, other_topic],
                            group_id=f"g-{uuid.uuid4()}", kafka=kafka_settings, handler=handle,
                            producer=producer, batch_handler=handle_batch)

    def buffered(topic: str) -> set[int]:  # partitions fetched and not yet handed out
        return {tp.partition for tp in runner._consumer._fetcher._records if tp.topic == topic}

    try:
        await runner.start()
        await wait_for(first_batch_in.is_set, what="the first batch of the backlog")
        # Produced together, so each partition's share arrives in one fetch; held until every one of
        # them is fetched (a fetch may bring some partitions before the others).
        sent = [await producer.send_raw(other_topic, encode_event(e), e.key) for e in others]
        partitions = {metadata.partition for metadata in await asyncio.gather(*sent)}
        await wait_for(lambda: buffered(other_topic) >= partitions, what="the other topic's records fetched")
        go_on.set()
        await wait_for(lambda: len(handled) == len(backlog) + len(others), what="every record")
    finally:
        go_on.set()
        await runner.stop()
        await producer.stop()
    position = {event_id: n for n, (_, event_id, _, _) in enumerate(handled)}
    last_other = max(position[e.id] for e in others)
    # The backlog still had thousands of records buffered when the others were fetched: they all went
    # in the batch after the held one.
    assert last_other < 2 * kafka_settings.max_poll_records, (last_other, len(handled))
    assert sorted(position) == sorted(e.id for e in (*backlog, *others))  # each once
    by_partition: dict[tuple[str, int], list[int]] = {}
    for topic, _, partition, offset in handled:
        by_partition.setdefault((topic, partition), []).append(offset)
    assert all(offsets == sorted(offsets) for offsets in by_partition.values())
