"""Findings 1, 2 and 4 of issue 11 at the orchestrator: oversized or invalid input never stops it.

1. A 950 KB non-JSON record on ``contact.requests`` used to kill the orchestrator's consumer: its
   dead-letter copy (~1.27 MB) was larger than the producer's request limit.
2. A schema-valid request with 20,000 variables (2.2 MB) was accepted, and its dispatch could never
   be produced.
4. Collection requests with a zero or negative balance were sent ("Tu pago de -$500.00").

After each, a good request of the same debtor (same key, same partition) is still dispatched and
``/ready`` answers 200.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError

from shared.bus import EventProducer
from shared.config import KafkaSettings
from shared.events import encode_event
from shared.events.contracts import DeadLettered, DeadLetteredEvent
from tests.helpers import TopicReader, wait_for
from tests.orchestrator.conftest import EDITOR, FakeClock, Orchestrator, make_settings, request_event, running

DISPATCHED = "cadencia.contact.dispatched.v1"
STATUS = "cadencia.contact.status_changed.v1"
DLQ = "cadencia.dlq.dead_lettered.v1"
ADMIN = {"Authorization": "Bearer admin-key"}


async def _produce_raw(kafka: KafkaSettings, topic: str, value: bytes, key: bytes) -> int:
    """Publish like a careless backend with a raised client limit would; returns the partition."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, max_request_size=4 * 1024 * 1024)
    await producer.start()
    try:
        metadata = await (await producer.send(topic, value=value, key=key))
        return int(metadata.partition)
    finally:
        await producer.stop()


async def _good_request_still_dispatched(orc: Orchestrator, reader: TopicReader, debtor: str) -> Any:
    event = request_event(debtor)
    await orc.publish(orc.topics.contact_requests, event)
    await wait_for(lambda: [e for e in reader.of_type(DISPATCHED) if e.data.request_id == event.id],
                   timeout=30, what="the good request dispatched")
    ready = await orc.http.get("/ready")
    assert ready.status_code == 200, ready.text
    return event


async def test_a_950_kb_non_json_record_is_dead_lettered_bounded_and_the_next_request_of_its_debtor_flows(
    kafka_settings: KafkaSettings, database_url: str
) -> None:
    debtor = "deb-huge-1"
    junk = b"\x00not json " + b"x" * (950 * 1024)
    # The original failure: a dead letter carrying the whole record cannot be produced at all.
    naive = DeadLetteredEvent(subject=debtor, data=DeadLettered(
        source_topic="t", partition=0, offset=0, key=debtor, value_b64=base64.b64encode(junk).decode(),
        error="invalid event", service="orchestrator", failed_at=FakeClock()()))
    assert len(encode_event(naive)) > 1024 * 1024
    probe = EventProducer(kafka_settings)
    await probe.start()
    try:
        with pytest.raises(MessageSizeTooLargeError):
            await probe.publish(f"{kafka_settings.topic_prefix}dlq", naive)
    finally:
        await probe.stop()

    async with running(make_settings(kafka_settings, database_url), FakeClock(), ("reminder",)) as orc:
        t = orc.topics
        async with TopicReader(kafka_settings, t.dlq, t.dispatch("sms"), t.contact_status) as reader:
            partition = await _produce_raw(kafka_settings, t.contact_requests, junk, debtor.encode())
            [letter] = await reader.wait_count(DLQ, 1)
            good = await _good_request_still_dispatched(orc, reader, debtor)

        raw_letter = next(r for r in reader.raw if r.topic == t.dlq)
        assert len(raw_letter.value) < orc.app.state.settings.kafka.max_event_bytes
        data = letter.data
        assert data.partition == partition and data.key == debtor and data.source_topic == t.contact_requests
        assert "event too large" in data.error and str(len(junk)) in data.error
        assert data.truncated and data.size == len(junk) and data.sha256 == hashlib.sha256(junk).hexdigest()
        assert base64.b64decode(data.value_b64) == junk[:4096]
        # The good request went to the same partition, behind the poison record.
        assert [r.partition for r in reader.raw if r.topic == t.dispatch("sms")]
        assert good.subject == debtor

        # The orchestrator kept the whole payload in its dead-letter table, and replay is possible.
        listed = await wait_for(lambda: _letters(orc), what="dead letter listed")
        [item] = listed
        assert item["complete"] and item["size"] == len(junk) and item["sha256"] == data.sha256
        detail = (await orc.http.get(f"/v1/dlq/{item['id']}", headers=ADMIN)).json()
        assert base64.b64decode(detail["value_b64"]) == junk
        assert orc.app.state.runtime_consumer.failure is None


async def _letters(orc: Orchestrator) -> list[dict[str, Any]]:
    response = await orc.http.get("/v1/dlq", headers=ADMIN)
    return list(response.json()["items"])


async def test_a_request_with_20000_variables_is_rejected_with_a_reason_and_its_debtor_still_served(
    kafka_settings: KafkaSettings, database_url: str
) -> None:
    debtor = "deb-vars-1"
    variables = {f"v{i:05d}": "x" * 100 for i in range(20_000)}
    big = request_event(debtor, variables=variables)
    assert len(encode_event(big)) > 2 * 1024 * 1024  # the 2.2 MB request of the finding
    medium = request_event(debtor, variables={f"v{i}": "y" * 100 for i in range(60)})  # ~6.5 KB: schema-valid

    async with running(make_settings(kafka_settings, database_url), FakeClock(), ("reminder",)) as orc:
        t = orc.topics
        async with TopicReader(kafka_settings, t.dlq, t.dispatch("sms"), t.contact_status) as reader:
            # Over HTTP: the body limit refuses it before it is read.
            response = await orc.http.post("/v1/contact-requests", content=encode_event(big),
                                           headers={**EDITOR, "content-type": "application/json"})
            assert response.status_code == 413
            assert response.headers["content-type"].startswith("application/problem+json")
            # Over Kafka: dead-lettered unread, as too large.
            await _produce_raw(kafka_settings, t.contact_requests, encode_event(big), debtor.encode())
            [letter] = await reader.wait_count(DLQ, 1)
            assert "event too large" in letter.data.error
            # Small enough to read but over the variables limit: rejected with the reason.
            await orc.publish(t.contact_requests, medium)
            await wait_for(lambda: [e for e in reader.of_type(STATUS) if e.data.request_id == medium.id],
                           what="the medium request's status")
            [status] = [e.data for e in reader.of_type(STATUS) if e.data.request_id == medium.id]
            assert status.status == "rejected" and "variables are" in (status.reason or "")
            await _good_request_still_dispatched(orc, reader, debtor)
        assert not [e for e in reader.of_type(DISPATCHED) if e.data.request_id in (big.id, medium.id)]
        assert orc.app.state.ctx.relay.parked == 0


@pytest.mark.parametrize("balance", ["-500.00", "0.00"])
async def test_a_collection_request_with_a_balance_of_zero_or_less_is_rejected(
    kafka_settings: KafkaSettings, database_url: str, balance: str
) -> None:
    debtor = f"deb-neg-{balance}"
    async with running(make_settings(kafka_settings, database_url), FakeClock(),
                       ("reminder", "opt_out_confirmation")) as orc:
        t = orc.topics
        async with TopicReader(kafka_settings, t.dispatch("sms"), t.contact_status) as reader:
            bad = request_event(debtor, balance=balance)
            response = await orc.submit(bad)
            assert response.status_code == 202
            [result] = response.json()["results"]
            assert result["status"] == "rejected"
            assert "balance must be greater than 0" in result["reason"] and balance in result["reason"]
            await _good_request_still_dispatched(orc, reader, debtor)
            # A notice that states no amount is unaffected by the balance.
            notice = request_event(f"{debtor}-n", balance=balance, kind="opt_out_confirmation",
                                   template="opt_out_confirmation")
            [notice_result] = (await orc.submit(notice)).json()["results"]
            assert notice_result["status"] == "dispatched", notice_result
        assert not [e for e in reader.of_type(DISPATCHED) if e.data.request_id == bad.id]
