"""Hostile records on every consumed topic never stop a consumer, and each one has a recorded fate.

The whole system runs (orchestrator, SMS, e-mail, voice and WhatsApp services, the sandbox). Hypothesis
generates ``CADENCIA_HOSTILE_RECORDS`` records per topic (``make soak`` raises it; see ``hostile.py``):
contact requests, account events, outcomes, the four dispatch topics and templates. Then:

* a record a topic's consumers cannot read (undecodable, invalid, too large, of a type that does not
  belong there) is on the DLQ, from each service that consumes the topic, with its reason;
* a contact request that reads but carries hostile data gets a status: ``rejected`` with its reason
  for an unknown jurisdiction, time zone or currency and a zero or negative balance; whatever it
  becomes, no template evaluates what it carried (nothing evaluated reaches a provider);
* a record on the templates topic that is not a template is skipped and counted by every template
  cache (every process replays that topic at each start, so it is not dead-lettered);
* afterwards good events are delivered on every path (a request through the orchestrator to an SMS,
  a template and a dispatch on each channel), and every service is ready.

The figures (records per topic and kind, dead letters by reason, statuses) are printed for the record.
"""

from __future__ import annotations

import os
import re
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiokafka import AIOKafkaProducer
from hypothesis import given, settings

import services.whatsapp.app
import services.whatsapp.settings
from services.orchestrator.runtime.handlers import ACCOUNT_TYPES, OUTCOME_TYPES, REQUEST_TYPES
from shared.config import KafkaSettings
from shared.events import parse_event
from shared.events.contracts import ContactDispatchedEvent, StatusChangedEvent, TemplatePublishedEvent
from tests.channel_harness import (
    CONTENT_SID,
    dispatch_event,
    free_port,
    running_service,
    service_settings,
    template_event,
    unique_number,
)
from tests.e2e.harness import System, system
from tests.e2e.test_pipeline import next_lawful_noon, phone, request
from tests.email.harness import address, email_template
from tests.helpers import TopicReader, wait_for
from tests.reliability.hostile import EVALUATED, OTHER_TYPES, draw, hostile_for
from tests.voice.test_voice import voice_dispatch, voice_template

RECORDS = int(os.environ.get("CADENCIA_HOSTILE_RECORDS", "10"))
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300 + 10 * RECORDS)]

TOPICS = ("contact.requests", "account.events", "contact.outcomes", "dispatch.sms", "dispatch.email",
          "dispatch.voice", "dispatch.whatsapp", "templates")
DISPATCHED = "cadencia.contact.dispatched.v1"
#: Which event types each topic's consumers take, and which services dead-letter what they cannot.
ACCEPTS: dict[str, set[str]] = {"contact.requests": REQUEST_TYPES, "account.events": ACCOUNT_TYPES,
                                "contact.outcomes": OUTCOME_TYPES}
READERS: dict[str, set[str]] = {"contact.requests": {"orchestrator"}, "account.events": {"orchestrator"},
                                "contact.outcomes": {"orchestrator"},
                                # a channel service and the orchestrator's audit read each dispatch topic
                                **{f"dispatch.{c}": {c, "orchestrator"} for c in ("sms", "email", "voice", "whatsapp")}}
MUST_REJECT = {"unknown jurisdiction", "unknown time zone", "negative or zero amount", "unknown currency"}


def fate(topic: str, value: bytes, max_bytes: int) -> str:
    """What must become of ``value`` on ``topic``: ``dlq``, ``status`` (a request), ``skipped`` (a
    template cache) or ``valid`` (an event its consumer applies like any other)."""
    try:
        if len(value) > max_bytes and topic != "templates":  # the consumers' limit; the caches have none
            raise ValueError("too large")
        event = parse_event(value)
    except Exception:  # noqa: BLE001 - any failure to read is what is being classified
        return "skipped" if topic == "templates" else "dlq"
    if topic == "templates":
        return "valid" if isinstance(event, TemplatePublishedEvent) else "skipped"
    accepted = ACCEPTS.get(topic, {"cadencia.contact.dispatched.v1"})
    if event.type not in accepted:
        return "dlq"
    if topic.startswith("dispatch.") and event.data.channel != topic.removeprefix("dispatch."):  # type: ignore[union-attr]
        return "dlq"  # a dispatch for another channel is refused by the channel service
    return "status" if topic == "contact.requests" else "valid"


def reason_class(error: str) -> str:
    """``invalid event: ValidationError``, ``event too large``, ``unexpected event type``…"""
    head = error.split(":", 2)
    if error.startswith(("invalid event", "rejected by handler")):
        return ":".join(head[:2]).strip()
    return _shape(error.split(":")[0])


@pytest.mark.e2e
async def test_hostile_records_on_every_topic_are_dead_lettered_or_rejected_and_good_events_still_flow(
    kafka_settings: KafkaSettings, tmp_path: Path,
) -> None:
    plan = {topic: draw(hostile_for(topic), RECORDS * (2 if topic == "contact.requests" else 1)) for topic in TOPICS}
    async with system(kafka_settings, tmp_path, next_lawful_noon(), also=("voice", "email")) as s:
        wa_settings = service_settings(services.whatsapp.settings, kafka_settings,
                                       f"sqlite+aiosqlite:///{tmp_path}/whatsapp.db", s.sandbox, free_port(),
                                       group=f"{kafka_settings.topic_prefix}whatsapp")
        async with running_service(services.whatsapp.app, wa_settings) as whatsapp, \
                TopicReader(kafka_settings, f"{kafka_settings.topic_prefix}dlq") as dlq:
            s.channels["whatsapp"] = whatsapp
            published = await _publish(kafka_settings, plan)
            good = await _good_events(s, kafka_settings)
            report = await _fates(s, dlq, published, kafka_settings.max_event_bytes)
            await _delivered(s, good)
            for name, service in {"orchestrator": None, **s.channels}.items():
                http = s.http if service is None else httpx.AsyncClient(base_url=service.url)
                ready = await http.get("/ready")
                assert ready.status_code == 200, (name, ready.text)
                if service is not None:
                    await http.aclose()
            provider_requests = await s.sandbox.requests()
    print(report)  # noqa: T201 - the figures of the run, for the record
    assert not [r for r in provider_requests if EVALUATED in str(r)], "an injected template was evaluated"


async def _publish(kafka: KafkaSettings, plan: dict[str, list[tuple[str, bytes]]]) -> list[dict[str, Any]]:
    """Produce every record as a careless or hostile backend would (a raised client size limit)."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap_servers, max_request_size=4 * 1024 * 1024)
    await producer.start()
    published = []
    try:
        for topic, records in plan.items():
            for kind, value in records:
                key = f"deb-hostile-{uuid.uuid4().hex[:6]}".encode()
                meta = await (await producer.send(kafka.topic_prefix + topic, value=value, key=key))
                published.append({"topic": topic, "kind": kind, "value": value, "partition": meta.partition,
                                  "offset": meta.offset})
    finally:
        await producer.stop()
    return published


async def _good_events(s: System, kafka: KafkaSettings) -> dict[str, str]:
    """After the hostile records: a request to SMS through the orchestrator, and on each channel a new
    template version and a dispatch pinned to it. Returns ``{what: dispatch or request id}``."""
    good = request(f"deb-good-{uuid.uuid4().hex[:6]}", phone("0001"), "sms", "reminder_early")
    producer = s.orchestrator.state.ctx.producer
    await producer.publish(s.orchestrator.state.ctx.topics.contact_requests, good)
    topics = s.orchestrator.state.ctx.topics
    deadline = s.clock() + timedelta(minutes=2)
    dispatches: dict[str, ContactDispatchedEvent] = {
        "sms": dispatch_event("sms", unique_number("0001"), "after-sms"),
        "whatsapp": dispatch_event("whatsapp", unique_number("0002"), "after-whatsapp"),
        "email": dispatch_event("email", address("maria"), "after-email"),
        "voice": voice_dispatch(unique_number("0003"), "after-voice"),
    }
    templates = {"sms": template_event("after-sms", "sms"),
                 "whatsapp": template_event("after-whatsapp", "whatsapp", content_sid=CONTENT_SID),
                 "email": email_template("after-email"), "voice": voice_template("after-voice")}
    for channel, template in templates.items():
        await producer.publish(topics.templates, template)
        dispatch = dispatches[channel]
        when = deadline if channel == "sms" else datetime.now(UTC) + timedelta(minutes=2)  # SMS runs on s.clock
        data = dispatch.data.model_copy(update={"deadline": when})
        await producer.publish(topics.dispatch(channel), dispatch.model_copy(update={"data": data}))
    return {"request": good.id, **{channel: d.data.dispatch_id for channel, d in dispatches.items()}}


async def _fates(s: System, dlq: TopicReader, published: list[dict[str, Any]], max_bytes: int) -> str:
    """Wait for each record's fate; return the figures."""
    expected = [dict(record, fate=fate(record["topic"], record["value"], max_bytes)) for record in published]
    prefix = s.orchestrator.state.ctx.topics.prefix

    def letters(record: dict[str, Any]) -> list[Any]:
        return [e.data for e in dlq.events if e.data.source_topic == prefix + record["topic"]
                and e.data.partition == record["partition"] and e.data.offset == record["offset"]]

    def statuses(record: dict[str, Any]) -> list[StatusChangedEvent]:
        event_id = _event_id(record["value"])
        return [e for e in s.statuses.events if isinstance(e, StatusChangedEvent) and e.data.request_id == event_id]

    def unsettled() -> list[str]:
        waiting = []
        for record in expected:
            services = {d.service for d in letters(record)}
            if (record["fate"] == "dlq" and not READERS[record["topic"]] <= services) or (
                    record["fate"] == "status" and not statuses(record)):
                waiting.append(f"{record['topic']}@{record['partition']}/{record['offset']} {record['kind']} "
                               f"({record['fate']}; letters from {sorted(services)}): {record['value'][:120]!r}")
        skipped = sum(1 for r in expected if r["fate"] == "skipped")
        waiting += [f"{name}'s template cache skipped {service.app.state.templates.skipped} of {skipped}"
                    for name, service in s.channels.items() if service.app.state.templates.skipped < skipped]
        return waiting

    try:
        await wait_for(lambda: not unsettled(), timeout=120 + 2 * len(expected), interval=0.2,
                       what="every hostile record's fate")
    except AssertionError as exc:
        raise AssertionError("\n".join([str(exc), *unsettled()])) from None
    by_topic: dict[str, Counter[str]] = defaultdict(Counter)
    for record in expected:
        counts = by_topic[record["topic"]]
        counts[f"records: {record['kind']}"] += 1
        found = letters(record)
        assert all(d.error for d in found)
        for letter in found:
            counts[f"dlq[{letter.service}]: {reason_class(letter.error)}"] += 1
        for status in statuses(record):
            data = status.data
            if data.status == "rejected":
                assert data.reason, data
                counts[f"rejected: {_shape(data.reason)}"] += 1
            else:
                counts[f"status: {data.status}"] += 1
        if record["fate"] == "status" and record["kind"] in MUST_REJECT:
            assert any(st.data.status == "rejected" for st in statuses(record)), (
                record["kind"], record["value"][:400], [(st.data.status, st.data.reason) for st in statuses(record)])
        if record["fate"] == "skipped":
            counts["skipped by each template cache"] += 1
    lines = [f"hostile records: {len(expected)}"]
    for topic in TOPICS:
        lines.append(f"{topic}: " + "; ".join(f"{k} = {v}" for k, v in sorted(by_topic[topic].items())))
    return "\n".join(lines)


def _shape(reason: str) -> str:
    """A reason without the values it quotes, so reasons of one kind count together."""
    return re.sub(r"'[^']*'|-?\d[\d.]*", "…", reason)[:90]


def _event_id(value: bytes) -> str | None:
    try:
        return str(parse_event(value).id)
    except Exception:  # noqa: BLE001
        return None


async def _delivered(s: System, good: dict[str, str]) -> None:
    def request_delivered() -> bool:
        return any("delivered" in s.outcomes_of(d.data.dispatch_id) for d in s.dispatched(good["request"]))

    await wait_for(request_delivered, timeout=60, what="the good request delivered by SMS")
    for channel in ("sms", "email", "voice", "whatsapp"):
        await wait_for(lambda c=channel: s.outcomes_of(good[c]), timeout=60, what=f"the good {channel} dispatch")
    assert not any(s.outcomes_of(good[c]) == ["failed"] for c in ("sms", "email"))


@settings(max_examples=300, derandomize=True, database=None, deadline=None)
@given(OTHER_TYPES)
def test_every_wrong_type_value_can_be_written_as_a_record(value: object) -> None:
    """Drawing the plan failed (orjson: "Integer exceeds 64-bit range") on a >64-bit integer inside a
    generated list or dict, before the first record was sent."""
    assert orjson.dumps({"value": value}).startswith(b'{"value":')
