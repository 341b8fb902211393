"""Every event type round-trips through the real broker, byte-identical in meaning."""

from __future__ import annotations

import gc
import warnings

import pytest
from pydantic import ValidationError

from shared.bus import EventProducer, ensure_topics
from shared.config import KafkaSettings
from shared.events import EVENT_TYPES, TOPIC_OF_TYPE, Topics, encode_event, parse_event
from tests.foundation.samples import sample_events
from tests.helpers import TopicReader


def test_samples_cover_every_event_type() -> None:
    assert {type(e) for e in sample_events()} == set(EVENT_TYPES)
    assert {e.type for e in sample_events()} == set(TOPIC_OF_TYPE)


def test_decimal_balance_is_a_string_on_the_wire() -> None:
    wire = encode_event(sample_events()[0])
    assert b'"balance":"1234.50"' in wire


def test_unknown_type_and_missing_fields_are_refused() -> None:
    with pytest.raises(ValidationError):
        parse_event(b'{"specversion":"1.0","id":"x","source":"s","type":"cadencia.nope.v1","subject":"d","data":{}}')
    good = encode_event(sample_events()[3]).replace(b'"account_id":"acc-1"', b'"account_idx":"acc-1"')
    with pytest.raises(ValidationError):
        parse_event(good)


async def test_every_event_type_round_trips_through_the_broker(kafka_settings: KafkaSettings) -> None:
    topics = Topics(kafka_settings.topic_prefix)
    await ensure_topics(kafka_settings)
    sent = sample_events()
    producer = EventProducer(kafka_settings)
    await producer.start()
    try:
        async with TopicReader(kafka_settings, *topics.all()) as reader:
            for event in sent:
                base = TOPIC_OF_TYPE[event.type].replace("{channel}", "sms")
                await producer.publish(topics.name(base), event)
            received = await reader_wait(reader, len(sent))
    finally:
        await producer.stop()
    # Published unchanged, except for the trace context the producer stamps on each (shared.tracing).
    assert all(e.traceparent for e in received)
    unstamped = [e.model_copy(update={"traceparent": None}) for e in received]
    assert sorted(unstamped, key=lambda e: e.id) == sorted(sent, key=lambda e: e.id)
    keys = {r.key for r in reader.raw}
    assert b"deb-1" in keys  # keyed by debtor id


async def reader_wait(reader: TopicReader, count: int) -> list:
    from tests.helpers import wait_for

    await wait_for(lambda: len(reader.events) >= count, what=f"{count} events")
    return list(reader.events)


async def test_topic_bootstrap_is_idempotent(kafka_settings: KafkaSettings) -> None:
    first = await ensure_topics(kafka_settings)
    second = await ensure_topics(kafka_settings)
    assert set(first) == set(Topics(kafka_settings.topic_prefix).all())
    assert second == []


async def test_a_producer_never_started_is_closed_by_stop(kafka_settings: KafkaSettings) -> None:
    """Tools that only build the context (``bench/orchestrator.py``) stop a producer they never started:
    no unclosed aiokafka producer is left for the collector to warn about."""
    producer = EventProducer(kafka_settings)
    await producer.stop()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del producer
        gc.collect()
    assert not [w for w in caught if "Unclosed AIOKafkaProducer" in str(w.message)]
