"""A consumer whose records are paced (voice: calls leave at the caller's calls per second) keeps its
place in the group: its batch is sized from ``max_poll_interval_ms`` so a batch at the nominal rate
finishes well within it, nothing is redelivered and the group never rebalances.

The scale is shrunk so the test is short (an interval of seconds, a rate of tens a second); the rule is
the one the voice service's settings apply (``KafkaSettings.paced_batch_size``). A control with the
default batch size shows the same pacing does make the group rebalance and redeliver, so the first
test would see it if it happened.
"""

from __future__ import annotations

import uuid
from collections import Counter

from shared.bus import ConsumerRunner, EventProducer, RecordMeta, ensure_topics
from shared.channels.ratelimit import SenderLimits
from shared.config import KafkaSettings
from shared.events import AnyEvent, Topics
from shared.events.contracts import PromiseBroken, PromiseBrokenEvent
from tests.helpers import wait_for

RATE = 20.0  # records a second, like calls a second for voice
INTERVAL_MS = 4_000
RECORDS = 120  # six seconds of work at RATE: longer than the interval if taken as one batch


async def _paced_run(kafka: KafkaSettings) -> tuple[ConsumerRunner, Counter[str], EventProducer]:
    """Publish RECORDS events, then start a runner named ``paced`` whose handler leaves at RATE a second
    through the same limiter the channels use."""
    await ensure_topics(kafka)
    topics = Topics(kafka.topic_prefix)
    producer = EventProducer(kafka)
    await producer.start()
    for n in range(RECORDS):
        debtor = f"deb-{n}"
        event = PromiseBrokenEvent(subject=debtor, data=PromiseBroken(debtor_id=debtor, account_id=f"a{n}"))
        await producer.publish(topics.account_events, event)
    bucket = SenderLimits(RATE).bucket("caller")
    handled: Counter[str] = Counter()

    async def handle(event: AnyEvent, meta: RecordMeta) -> None:
        await bucket.acquire()  # the provider's pace: one slot every 1/RATE seconds
        handled[event.id] += 1

    runner = ConsumerRunner(name="paced", service="test", topics=[topics.account_events], group_id=f"g-{uuid.uuid4()}",
                            kafka=kafka, handler=handle, producer=producer)
    await runner.start()
    return runner, handled, producer


async def test_paced_batches_sized_from_the_poll_interval_finish_without_a_rebalance_or_a_redelivery(
    kafka_settings: KafkaSettings,
) -> None:
    kafka = kafka_settings.model_copy(update={"max_poll_interval_ms": INTERVAL_MS})
    size = kafka.paced_batch_size(RATE)
    assert size * 1000 / RATE <= INTERVAL_MS / 2  # the rule: a batch takes a quarter of the interval
    kafka = kafka.model_copy(update={"batch_sizes": {"paced": size}})
    runner, handled, producer = await _paced_run(kafka)
    try:
        await wait_for(lambda: len(handled) == RECORDS, timeout=60, what="every record handled")
    finally:
        await runner.stop()
        await producer.stop()
    assert set(handled.values()) == {1}  # nothing redelivered
    assert runner.assignments == 1  # the member kept its partitions: no rebalance
    assert runner.batches == 0 and runner.handled == RECORDS


async def test_control_one_batch_longer_than_the_poll_interval_makes_the_group_rebalance_and_redeliver(
    kafka_settings: KafkaSettings,
) -> None:
    kafka = kafka_settings.model_copy(update={"max_poll_interval_ms": INTERVAL_MS})
    runner, handled, producer = await _paced_run(kafka)  # max_poll_records (500): all records in one batch
    try:
        await wait_for(lambda: runner.assignments >= 2, timeout=60, what="a rebalance")
        await wait_for(lambda: any(n > 1 for n in handled.values()), timeout=60, what="a redelivery")
    finally:
        await runner.stop()
        await producer.stop()
