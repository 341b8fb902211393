"""A broker restarted empty on the same port: the outbox relay deletes nothing the new broker lacks.

Tansu acknowledges records for a topic it does not have and then has none of them; a relay that
trusted the acknowledgement would delete rows whose events exist nowhere.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from shared.bus import EventProducer, ensure_topics
from shared.bus.broker import EmbeddedBroker
from shared.bus.producer import BrokerChanged
from shared.config import DatabaseSettings, KafkaSettings
from shared.db import Database, OutboxRecord, OutboxRelay, add_to_outbox
from shared.db.migrate import upgrade
from shared.events import Topics
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
