"""A broker restarted empty on the same port: the outbox relay deletes nothing the new broker lacks,
and a consumer handles nothing the new broker serves.

Tansu acknowledges records for a topic it does not have and then has none of them; a relay that
trusted the acknowledgement would delete rows whose events exist nowhere. A consumer rejoins the new
broker on its own and reads its topics from the start; what it handled there before its process
restarts (the topic guard notices within seconds) would be cut off mid-way: a send in flight would
end ``unknown``.
"""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

import pytest
from sqlalchemy import func, select

from shared.bus import ConsumerRunner, EventProducer, RecordMeta, ensure_topics
from shared.bus.broker import EmbeddedBroker
from shared.bus.producer import BrokerChanged
from shared.config import DatabaseSettings, KafkaSettings
from shared.db import Database, OutboxRecord, OutboxRelay, add_to_outbox
from shared.db.attempts import ConsumerAttempts
from shared.db.migrate import upgrade
from shared.events import AnyEvent, Topics
from shared.events.contracts import PromiseBroken, PromiseBrokenEvent
from tests.helpers import wait_for


def _event(n: int) -> PromiseBrokenEvent:
    return PromiseBrokenEvent(subject=f"deb-{n}", data=PromiseBroken(debtor_id=f"deb-{n}", account_id=f"a{n}"))


async def _outbox_rows(db: Database) -> int:
    async with db.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(OutboxRecord)) or 0)


async def _answers_with_another_cluster(producer: EventProducer) -> bool:
    try:
        cluster_id, _ = await producer.cluster()
    except Exception:  # noqa: BLE001 - not reconnected yet
        return False
    return producer.changed(cluster_id)


async def test_the_relay_keeps_its_rows_when_a_fresh_broker_took_the_old_ones_place(
    tmp_path: Path, database_settings: DatabaseSettings, kafka_settings: KafkaSettings,
) -> None:
    broker = EmbeddedBroker(log_path=str(tmp_path / "broker.log")).start()
    kafka = kafka_settings.model_copy(update={"bootstrap_servers": broker.bootstrap_servers})
    topic = Topics(kafka.topic_prefix).account_events
    db = Database(database_settings)
    await upgrade(db, "foundationtest")
    producer = EventProducer(kafka)
    try:
        await ensure_topics(kafka)
        await producer.start()
        relay = OutboxRelay(db, producer)
        async with db.transaction() as session:
            add_to_outbox(session, topic, _event(1))
        assert await relay.relay_once() == 1  # the broker the process started on

        assert broker.process is not None
        broker.process.send_signal(signal.SIGKILL)
        broker.process.wait(timeout=30)
        broker.start(timeout=60)  # the same port, another cluster, no topics
        async with db.transaction() as session:
            add_to_outbox(session, topic, _event(2))
        await wait_for(lambda: _answers_with_another_cluster(producer), timeout=60, interval=0.2,
                       what="the producer reaching the new broker")

        with pytest.raises(BrokerChanged, match="another cluster"):
            await relay.relay_once()
        assert await _outbox_rows(db) == 1  # kept, for the restarted process to publish
        assert relay.failures == 0  # the row is not at fault: no attempt counted, never parked
        assert topic not in await producer.topics()  # nothing sent, nothing auto-created
    finally:
        await producer.stop()
        await db.dispose()
        broker.stop()


async def test_a_consumer_handles_nothing_a_fresh_broker_serves_and_its_restart_starts_afresh(
    tmp_path: Path, database_settings: DatabaseSettings, kafka_settings: KafkaSettings,
) -> None:
    """The records of the new broker wait for a process started on it; that one handles them as
    batches: the crash log's counts at the old broker's offsets (numbered from 0 again) are not its."""
    broker = EmbeddedBroker(log_path=str(tmp_path / "broker.log")).start()
    kafka = kafka_settings.model_copy(update={"bootstrap_servers": broker.bootstrap_servers})
    topic = Topics(kafka.topic_prefix).account_events
    db = Database(database_settings)
    await upgrade(db, "foundationtest")
    whole: list[str] = []  # handled in a batch
    alone: list[str] = []  # handled one at a time (after a crash)
    fatal: list[BaseException] = []

    async def handle(event: AnyEvent, meta: RecordMeta) -> None:
        alone.append(event.data.account_id)  # type: ignore[union-attr]

    async def handle_batch(items: list[tuple[AnyEvent, RecordMeta]]) -> None:
        whole.extend(event.data.account_id for event, _ in items)  # type: ignore[union-attr]

    def runner(group: str) -> ConsumerRunner:
        return ConsumerRunner(name="swap", service="test", topics=[topic], group_id=group, kafka=kafka,
                              handler=handle, batch_handler=handle_batch, producer=producer, on_fatal=fatal.append,
                              crash_log=ConsumerAttempts(db), accept_types={"cadencia.account.promise_broken.v1"})

    await ensure_topics(kafka)
    producer = EventProducer(kafka)
    await producer.start()
    group = f"g-{uuid.uuid4()}"
    first, restarted = runner(group), None
    fresh = EventProducer(kafka)
    try:
        await first.start()
        for n in range(12):
            await producer.publish(topic, _event(n))
        await wait_for(lambda: len(whole) == 12, timeout=30, what="the old broker's records")
        for partition in range(kafka.partitions_for(topic)):  # every partition counted its first batch
            assert await ConsumerAttempts(db).count(group, topic, partition) == 1

        assert broker.process is not None
        broker.process.send_signal(signal.SIGKILL)
        broker.process.wait(timeout=30)
        broker.start(timeout=60)  # the same port, another cluster, no topics
        # Another service, started afresh on the new broker, re-creates the topics and publishes.
        await ensure_topics(kafka)
        await fresh.start()
        for n in range(100, 112):
            await fresh.publish(topic, _event(n))

        await wait_for(lambda: first.failure is not None or len(whole) + len(alone) > 12, timeout=90, interval=0.1,
                       what="the consumer refusing (or handling) the new broker's records")
        assert (len(whole), alone) == (12, [])  # nothing of the new broker's
        assert isinstance(first.failure, BrokerChanged)
        assert fatal == [first.failure]  # its process is asked to restart
        with pytest.raises(RuntimeError, match="another cluster"):
            await first.ping()  # not ready meanwhile
        await first.stop()

        restarted = runner(group)  # the process, started afresh on the new broker
        await restarted.start()
        await wait_for(lambda: len(whole) + len(alone) == 24, timeout=60, what="the new broker's records")
        assert alone == []  # handled as batches: nothing crashed on this broker
        assert sorted(whole[12:]) == sorted(f"a{n}" for n in range(100, 112))
        assert fatal == [first.failure]
    finally:
        await first.stop()
        if restarted is not None:
            await restarted.stop()
        await fresh.stop()
        await producer.stop()
        await db.dispose()
        broker.stop()
