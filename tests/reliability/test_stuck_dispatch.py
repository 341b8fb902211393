"""A dispatch stuck retrying does not hold back the other debtors of its partition.

The sandbox refuses every message to one address (503, or 429 with ``Retry-After``) until the test
clears it. That dispatch's send is deferred out of its consumer batch to the durable retry path after
``inline_retry_s``; the dispatches of other debtors published behind it on the same partition are all
sent while it is still retrying. When the fault clears it is sent once; one whose ``send_before``
comes first ends ``expired``, unsent. Replicas sharing the database, one of them stopped mid-retry,
resume it exactly once.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka.partitioner import DefaultPartitioner
from sqlalchemy import select, update

import services.sms.app as sms_app
import services.sms.settings as sms_settings
from services.sandbox.testing import SandboxHandle
from shared.channels.models import SendLogRecord
from shared.config import KafkaSettings
from shared.events.contracts import ContactDispatchedEvent
from tests.channel_harness import (
    Publisher,
    Running,
    dispatch_event,
    free_port,
    running_service,
    sandbox_messages,
    service_settings,
    signed_post,
    template_cached,
    template_event,
    unique_number,
)
from tests.helpers import TopicReader, wait_for

OTHERS = 40


class SMS:
    Settings = sms_settings.Settings
    create_app = staticmethod(sms_app.create_app)


def settings_for(kafka: KafkaSettings, database_url: str, sandbox: SandboxHandle, group: str) -> Any:
    settings = service_settings(SMS, kafka, database_url, sandbox, free_port(), group=group, mps=50.0)
    # Retry inside the batch for half a second at most; look for due deferred sends every 0.1 s.
    sending = settings.sending.model_copy(update={"inline_retry_s": 0.5, "retry_poll_s": 0.1})
    return settings.model_copy(update={"sending": sending})


def partition_of(debtor_id: str, partitions: int) -> int:
    """The partition the producer's default partitioner picks for a debtor (events are keyed by debtor)."""
    every = list(range(partitions))
    return int(DefaultPartitioner()(debtor_id.encode(), every, every))


def debtors_on(partition: int, partitions: int, count: int) -> list[str]:
    found: list[str] = []
    while len(found) < count:
        debtor = f"debtor-{uuid.uuid4().hex[:10]}"
        if partition_of(debtor, partitions) == partition:
            found.append(debtor)
    return found


async def rows(service: Running, dispatch_ids: list[str]) -> dict[str, SendLogRecord]:
    async with service.app.state.db.read_sessions() as session:
        stmt = select(SendLogRecord).where(SendLogRecord.dispatch_id.in_(dispatch_ids))
        return {r.dispatch_id: r for r in (await session.execute(stmt)).scalars()}


async def accepted(sandbox: SandboxHandle, to: str) -> list[dict[str, Any]]:
    return [r for r in await sandbox_messages(sandbox, to) if r["status"] == 201]


async def clear_scenario(sandbox: SandboxHandle, address: str) -> None:
    response = await sandbox.http.delete(f"/sandbox/scenarios/{address}")
    response.raise_for_status()


async def test_a_stuck_dispatch_leaves_its_batch_and_the_partition_goes_on_then_it_is_sent_once_or_expires(
    kafka_settings: KafkaSettings, database_url: str, sandbox: SandboxHandle, outcomes: TopicReader,
    publisher: Publisher, group: str,
) -> None:
    partitions = kafka_settings.partitions
    stuck_debtor, late_debtor, *other_debtors = debtors_on(0, partitions, OTHERS + 2)
    stuck_to, late_to = unique_number("0001"), unique_number("0002")
    await sandbox.set_scenario(stuck_to, error_status=503)  # the provider refuses it until cleared
    await sandbox.set_scenario(late_to, error_status=429, retry_after_s=1)
    stuck = dispatch_event("sms", stuck_to, "reminder", debtor_id=stuck_debtor)
    others = [dispatch_event("sms", unique_number("0003"), "reminder", debtor_id=d) for d in other_debtors]
    await publisher.template(template_event("reminder", "sms"))
    settings = settings_for(kafka_settings, database_url, sandbox, group)
    async with running_service(SMS, settings) as service:
        await template_cached(service, "reminder")
        late = dispatch_event("sms", late_to, "reminder", debtor_id=late_debtor)
        send_before = datetime.now(UTC) + timedelta(seconds=5)
        late = late.model_copy(update={"data": late.data.model_copy(update={"send_before": send_before})})
        await publisher.dispatch(stuck)
        await publisher.dispatch(late)
        # Both are being retried (their batch is in progress) before the others are published behind them.
        for to in (stuck_to, late_to):
            await sandbox.eventually(lambda to=to: _refused_twice(sandbox, to), timeout=30)
        for event in others:
            await publisher.dispatch(event)
        other_ids = [e.data.dispatch_id for e in others]

        async def others_sent() -> bool:
            found = await rows(service, other_ids)
            return len(found) == OTHERS and all(r.state == "sent" for r in found.values())

        await sandbox.eventually(others_sent, timeout=60, interval=0.1)
        held = (await rows(service, [stuck.data.dispatch_id]))[stuck.data.dispatch_id]
        assert held.state in ("retrying", "sending") and held.status is None  # still retrying, no outcome yet
        assert await accepted(sandbox, stuck_to) == []

        async def expired() -> bool:
            row = (await rows(service, [late.data.dispatch_id])).get(late.data.dispatch_id)
            return row is not None and row.state == "expired"

        await sandbox.eventually(expired, timeout=30, interval=0.1)
        assert await accepted(sandbox, late_to) == []  # ended unsent at send_before
        await clear_scenario(sandbox, stuck_to)

        async def stuck_sent() -> bool:
            row = (await rows(service, [stuck.data.dispatch_id]))[stuck.data.dispatch_id]
            return row.state == "sent" and await service.results_recorded()

        await sandbox.eventually(stuck_sent, timeout=30, interval=0.1)
        row = (await rows(service, [stuck.data.dispatch_id]))[stuck.data.dispatch_id]
        deferred = service.app.state.deferred
    requests = await sandbox_messages(sandbox, stuck_to)
    assert len(await accepted(sandbox, stuck_to)) == 1  # sent once
    assert row.attempts == len(requests) >= 3  # every attempt counted, across the batch and the retry path
    assert row.next_attempt_at is None and row.resume is None and row.error_code is None
    assert deferred.resumed >= 1
    print(f"stuck: {OTHERS} other debtors sent while it retried; sent once after {row.attempts} attempts "  # noqa: T201
          f"({deferred.resumed} claims by the retry path, both refused dispatches); the late one expired unsent")
    for event in others:
        assert len(await sandbox_messages(sandbox, event.data.to)) == 1  # never held, never retried
    await wait_for(lambda: "accepted" in _statuses(outcomes, stuck) or "sent" in _statuses(outcomes, stuck),
                   timeout=15, what="the stuck dispatch's outcome")
    assert "expired" in _statuses(outcomes, late)
    assert "unknown" not in _statuses(outcomes, stuck)


async def test_replicas_resume_a_deferred_send_once_after_the_holder_stops(
    kafka_settings: KafkaSettings, database_url: str, sandbox: SandboxHandle, publisher: Publisher, group: str,
) -> None:
    stuck_to = unique_number("0001")
    await sandbox.set_scenario(stuck_to, error_status=503)
    stuck = dispatch_event("sms", stuck_to, "reminder")
    await publisher.template(template_event("reminder", "sms"))
    first = settings_for(kafka_settings, database_url, sandbox, group)
    second = settings_for(kafka_settings, database_url, sandbox, group)
    async with running_service(SMS, second) as survivor:
        async with running_service(SMS, first) as holder:
            await template_cached(holder, "reminder")
            await template_cached(survivor, "reminder")
            await publisher.dispatch(stuck)

            async def deferred() -> bool:
                row = (await rows(holder, [stuck.data.dispatch_id])).get(stuck.data.dispatch_id)
                return row is not None and row.next_attempt_at is not None

            await sandbox.eventually(deferred, timeout=30, interval=0.1)
            # Both replicas now look for the due row; whichever holds it, it is stopped with it in hand.
        await sandbox.eventually(lambda: _refused_twice(sandbox, stuck_to), timeout=10)
        await clear_scenario(sandbox, stuck_to)

        async def sent() -> bool:
            row = (await rows(survivor, [stuck.data.dispatch_id]))[stuck.data.dispatch_id]
            return row.state == "sent"

        await sandbox.eventually(sent, timeout=30, interval=0.1)
    assert len(await accepted(sandbox, stuck_to)) == 1


async def test_a_callback_for_a_message_the_retry_path_sent_ends_its_retrying(
    kafka_settings: KafkaSettings, database_url: str, sandbox: SandboxHandle, outcomes: TopicReader,
    publisher: Publisher, group: str,
) -> None:
    """A resumed send was accepted and its holder died before recording the answer: the message's
    callback makes the row ``sent`` and ends its retrying, so none of it stays on a ``sent`` row."""
    to = unique_number("0001")
    await sandbox.set_scenario(to, error_status=503)
    event = dispatch_event("sms", to, "reminder")
    await publisher.template(template_event("reminder", "sms"))
    settings = settings_for(kafka_settings, database_url, sandbox, group)
    # The retry path looks for due rows once a minute here: the deferred row stays as this test sets it.
    settings = settings.model_copy(update={"sending": settings.sending.model_copy(update={"retry_poll_s": 60.0})})
    dispatch_id = event.data.dispatch_id
    async with running_service(SMS, settings) as service:
        await template_cached(service, "reminder")
        await publisher.dispatch(event)

        async def retrying() -> bool:
            row = (await rows(service, [dispatch_id])).get(dispatch_id)
            return row is not None and row.state == "retrying"

        await sandbox.eventually(retrying, timeout=30, interval=0.1)
        before = (await rows(service, [dispatch_id]))[dispatch_id]
        assert before.error_code == "20503" and before.resume is not None and before.next_attempt_at is not None
        # Claimed by a holder of the retry path (its conditional update), which then died in its request.
        async with service.app.state.db.transaction() as session:
            await session.execute(update(SendLogRecord).where(SendLogRecord.dispatch_id == dispatch_id,
                                                              SendLogRecord.state == "retrying")
                                  .values(state="sending"))
        sid = "SM" + uuid.uuid4().hex
        url = f"{service.url}/webhooks/twilio/status?dispatch={dispatch_id}"
        token = settings.twilio.auth_token.get_secret_value()
        answer = await signed_post(url, token, {"MessageSid": sid, "MessageStatus": "sent", "To": to})
        assert answer.status_code == 204
        row = (await rows(service, [dispatch_id]))[dispatch_id]
        await service.app.state.deferred.resume_once()  # neither resumed nor reported unknown
        again = (await rows(service, [dispatch_id]))[dispatch_id]
    assert (row.state, row.provider_id, row.status) == ("sent", sid, "sent")
    assert (row.next_attempt_at, row.resume, row.error_code, row.error_message) == (None, None, None, None)
    assert (again.state, again.status) == ("sent", "sent")
    await wait_for(lambda: "sent" in _statuses(outcomes, event), timeout=15, what="the sent outcome")
    assert "unknown" not in _statuses(outcomes, event)


async def _refused_twice(sandbox: SandboxHandle, to: str) -> bool:
    return len(await sandbox_messages(sandbox, to)) >= 2


def _statuses(reader: TopicReader, event: ContactDispatchedEvent) -> list[str]:
    return [e.data.status for e in reader.of_type("cadencia.contact.delivery_updated.v1")
            if e.data.dispatch_id == event.data.dispatch_id]
