"""A consumer batch is one unit of work, and results and webhooks are committed in groups (docs/internals.md: batches),
without weakening delivery: claims committed before any request, nothing sent twice, webhooks answered only
once what they changed is durable."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from aiokafka.partitioner import DefaultPartitioner
from sqlalchemy import event, select, text

import services.sms.app as sms_app
import services.sms.settings as sms_settings
from services.sandbox.testing import SandboxHandle
from shared.channels.models import ProviderReceipt, SendLogRecord
from shared.config import KafkaSettings
from shared.db import Database
from shared.events.contracts import ContactDispatchedEvent
from tests.channel_harness import (
    Publisher,
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


class SMS:
    Settings = sms_settings.Settings
    create_app = staticmethod(sms_app.create_app)


DELIVERY = "cadencia.contact.delivery_updated.v1"


def statuses(reader: TopicReader, dispatch_id: str) -> list[str]:
    return [e.data.status for e in reader.of_type(DELIVERY) if e.data.dispatch_id == dispatch_id]


def debtors_on_one_partition(count: int, partitions: int) -> list[str]:
    """Distinct debtors whose events share a partition: published together they are one record batch,
    so the service fetches them in one ``getmany``."""
    found: list[str] = []
    while len(found) < count:
        debtor = f"debtor-{uuid.uuid4().hex[:8]}"
        if DefaultPartitioner()(debtor.encode(), list(range(partitions)), list(range(partitions))) == 0:
            found.append(debtor)
    return found


def _values(parameters: Any) -> Iterator[Any]:
    if isinstance(parameters, dict):
        yield from parameters.values()
    elif isinstance(parameters, list | tuple):
        for value in parameters:
            yield from _values(value)
    else:
        yield parameters


@contextmanager
def engine_log(db: Database, dispatch_ids: set[str]) -> Iterator[list[tuple[str, int, float, frozenset[str]]]]:
    """In order: each insert into the send log (with which of ``dispatch_ids`` it carries) and each commit,
    by connection, with the time it was issued."""
    entries: list[tuple[str, int, float, frozenset[str]]] = []
    engine = db.engine.sync_engine

    def executed(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO SEND_LOG"):
            carried = frozenset(v for v in _values(parameters) if isinstance(v, str) and v in dispatch_ids)
            entries.append(("insert", id(conn), time.time(), carried))

    def committed(conn: Any) -> None:
        entries.append(("commit", id(conn), time.time(), frozenset()))

    event.listen(engine, "after_cursor_execute", executed)
    event.listen(engine, "commit", committed)
    try:
        yield entries
    finally:
        event.remove(engine, "after_cursor_execute", executed)
        event.remove(engine, "commit", committed)


async def test_a_batch_of_dispatches_is_claimed_in_one_transaction_committed_before_its_first_request(
    kafka_settings: KafkaSettings, database_url: str, sandbox: SandboxHandle, outcomes: TopicReader,
    publisher: Publisher, group: str,
) -> None:
    settings = service_settings(SMS, kafka_settings, database_url, sandbox, free_port(), group=group, mps=500,
                                max_in_flight=32)
    await publisher.template(template_event("reminder", "sms"))
    debtors = debtors_on_one_partition(20, kafka_settings.partitions)
    events = [dispatch_event("sms", unique_number("0001"), "reminder", debtor_id=d) for d in debtors]
    ids = {e.data.dispatch_id for e in events}
    async with running_service(SMS, settings) as service:
        await template_cached(service, "reminder")
        with engine_log(service.app.state.db, ids) as entries:
            await publisher.producer.publish_many([(publisher.topics.dispatch("sms"), e) for e in events])
            await wait_for(lambda: all("delivered" in statuses(outcomes, i) for i in ids), timeout=60,
                           what="every dispatch delivered")
        runner, handler = service.app.state.runner, service.app.state.dispatch
        # A delivery callback can be committed and published before the send's own answer: the batch
        # returns once that is committed too, so "delivered" everywhere does not mean the batch is done.
        await wait_for(lambda: runner.handled >= 20, timeout=30, what="the batch handled")
        assert (runner.batches, runner.batch_fallbacks, runner.handled) == (1, 0, 20)
        assert handler.claims == 1 and handler.requests == 20
    inserts = [e for e in entries if e[0] == "insert" and e[3]]
    assert len(inserts) == 1 and inserts[0][3] == ids, "one statement claims the whole batch, nothing twice"
    _, connection, _, _ = inserts[0]
    claimed_at = next(at for kind, conn, at, _ in entries[entries.index(inserts[0]):]
                      if kind == "commit" and conn == connection)
    requests = [r for e in events for r in await sandbox_messages(sandbox, e.data.to)]
    assert len(requests) == 20
    assert min(r["received_ts"] for r in requests) >= claimed_at, "a request left before the claims were committed"


async def test_claims_are_not_limited_to_the_requests_in_flight(
    kafka_settings: KafkaSettings, database_url: str, sandbox: SandboxHandle, outcomes: TopicReader,
    publisher: Publisher, group: str,
) -> None:
    """Two provider requests at a time, yet the batch's twelve dispatches are claimed in one transaction:
    a result waiting for its group commit does not hold a provider connection, and claims are not taken
    a few at a time."""
    latency_s = 0.15
    settings = service_settings(SMS, kafka_settings, database_url, sandbox, free_port(), group=group, mps=1000,
                                burst=100, max_in_flight=2, max_claimed=64)
    await publisher.template(template_event("reminder", "sms"))
    debtors = debtors_on_one_partition(12, kafka_settings.partitions)
    events = [dispatch_event("sms", unique_number("0001"), "reminder", debtor_id=d) for d in debtors]
    ids = {e.data.dispatch_id for e in events}
    await sandbox.set_faults(provider="twilio", latency={"kind": "fixed", "ms": latency_s * 1000})
    try:
        async with running_service(SMS, settings) as service:
            await template_cached(service, "reminder")
            await publisher.producer.publish_many([(publisher.topics.dispatch("sms"), e) for e in events])
            runner, handler = service.app.state.runner, service.app.state.dispatch
            await wait_for(lambda: runner.handled == 12, timeout=60, what="the batch handled")
            # "sent" comes with the sandbox's status callbacks, after the batch: waited for, not assumed.
            await wait_for(lambda: all("sent" in statuses(outcomes, i) for i in ids), timeout=60, what="sent")
            assert (runner.batches, runner.batch_fallbacks) == (1, 0)
            assert handler.claims == 1 and handler.requests == 12
    finally:
        await sandbox.clear_faults()
    arrived = sorted([r["received_ts"] for e in events for r in await sandbox_messages(sandbox, e.data.to)])
    assert len(arrived) == 12
    # Each request is answered after ``latency_s``: with two open at most, a third arrives only once the
    # first was answered (a little slack for the clock's resolution).
    gaps = [later - earlier for earlier, later in zip(arrived, arrived[2:], strict=False)]
    assert min(gaps) >= latency_s * 0.8, f"more than two requests were open at once: {gaps}"


async def test_a_dispatch_twice_in_one_batch_is_sent_once_and_its_outcome_re_emitted(
    kafka_settings: KafkaSettings, tmp_path: Any, sandbox: SandboxHandle, outcomes: TopicReader,
    publisher: Publisher, group: str,
) -> None:
    settings = service_settings(SMS, kafka_settings, f"sqlite+aiosqlite:///{tmp_path / 'sms.db'}", sandbox,
                                free_port(), group=group)
    await publisher.template(template_event("reminder", "sms"))
    to = unique_number("0001")
    event = dispatch_event("sms", to, "reminder")
    # The same event again (a redelivery), and the orchestrator's second event for the same dispatch.
    again = ContactDispatchedEvent(subject=event.subject, source=event.source, data=event.data)
    async with running_service(SMS, settings) as service:
        await template_cached(service, "reminder")
        topic = publisher.topics.dispatch("sms")
        await publisher.producer.publish_many([(topic, event), (topic, event), (topic, again)])
        await wait_for(lambda: "delivered" in statuses(outcomes, event.data.dispatch_id), what="delivered")
        runner = service.app.state.runner
        await wait_for(lambda: runner.handled >= 3, what="the three copies handled")
        assert (runner.batches, runner.batch_fallbacks) == (1, 0)
        assert service.app.state.dispatch.requests == 1
        async with service.app.state.db.read_sessions() as session:
            row = (await session.execute(select(SendLogRecord).where(
                SendLogRecord.dispatch_id == event.data.dispatch_id))).scalar_one()
        assert row.state == "sent"
    assert len(await sandbox_messages(sandbox, to)) == 1
    # Re-emitted outcomes carry the ids of the first ones: consumers' inboxes drop them.
    found = [e for e in outcomes.of_type(DELIVERY) if e.data.dispatch_id == event.data.dispatch_id]
    assert {e.data.status for e in found} <= {"accepted", "sent", "delivered"}
    assert len({e.id for e in found}) == len({e.data.status for e in found})


async def test_concurrent_status_callbacks_share_commits_and_each_is_answered_after_its_row_is_durable(
    kafka_settings: KafkaSettings, database_url: str, sandbox: SandboxHandle, outcomes: TopicReader,
    publisher: Publisher, group: str,
) -> None:
    settings = service_settings(SMS, kafka_settings, database_url, sandbox, free_port(), group=group, mps=500)
    token = settings.twilio.auth_token.get_secret_value()
    await publisher.template(template_event("reminder", "sms"))
    events = [dispatch_event("sms", unique_number("0001"), "reminder") for _ in range(40)]
    async with running_service(SMS, settings) as service:
        await template_cached(service, "reminder")
        await publisher.producer.publish_many([(publisher.topics.dispatch("sms"), e) for e in events])
        await wait_for(lambda: all("delivered" in statuses(outcomes, e.data.dispatch_id) for e in events),
                       timeout=60, what="every dispatch delivered")
        db: Database = service.app.state.db
        async with db.read_sessions() as session:
            found = await session.execute(select(SendLogRecord.dispatch_id, SendLogRecord.provider_id).where(
                SendLogRecord.dispatch_id.in_([e.data.dispatch_id for e in events])))
            sids: dict[str, str] = dict(found.all())
        commits = 0

        def counted() -> None:
            nonlocal commits
            commits += 1

        db.on_commit(counted)
        writer = service.app.state.writer
        written_before = writer.rows

        async def read_receipt(dispatch_id: str) -> None:
            sid = sids[dispatch_id]
            url = f"{service.url}/webhooks/twilio/status?dispatch={dispatch_id}"
            answer = await signed_post(url, token, {"MessageSid": sid, "MessageStatus": "read", "To": "x"})
            assert answer.status_code == 204
            # Answered: the receipt and the new status are already readable from another connection.
            async with db.read_sessions() as session:
                receipt = await session.get(ProviderReceipt, (sid, "read"))
                status = await session.scalar(select(SendLogRecord.status).where(
                    SendLogRecord.dispatch_id == dispatch_id))
            assert receipt is not None and status == "read"

        await asyncio.gather(*(read_receipt(e.data.dispatch_id) for e in events))
        # Every callback written (a late callback of the earlier deliveries may share the window).
        assert writer.rows - written_before >= 40
        assert 1 <= commits < 40, f"{commits} transactions for 40 callbacks"
        await wait_for(lambda: all("read" in statuses(outcomes, e.data.dispatch_id) for e in events),
                       what="every read status published")


async def test_a_status_callback_whose_write_fails_is_not_acknowledged(
    kafka_settings: KafkaSettings, tmp_path: Any, sandbox: SandboxHandle, outcomes: TopicReader,
    publisher: Publisher, group: str,
) -> None:
    settings = service_settings(SMS, kafka_settings, f"sqlite+aiosqlite:///{tmp_path / 'sms.db'}", sandbox,
                                free_port(), group=group)
    token = settings.twilio.auth_token.get_secret_value()
    await publisher.template(template_event("reminder", "sms"))
    event = dispatch_event("sms", unique_number("0001"), "reminder")
    async with running_service(SMS, settings) as service:
        await template_cached(service, "reminder")
        await publisher.dispatch(event)
        await wait_for(lambda: "delivered" in statuses(outcomes, event.data.dispatch_id), what="delivered")
        db: Database = service.app.state.db
        async with db.read_sessions() as session:
            sid = await session.scalar(select(SendLogRecord.provider_id).where(
                SendLogRecord.dispatch_id == event.data.dispatch_id))
        async with db.engine.begin() as conn:  # the receipts table is gone: every write of a callback fails
            await conn.execute(text("ALTER TABLE provider_receipts RENAME TO provider_receipts_away"))
        url = f"{service.url}/webhooks/twilio/status?dispatch={event.data.dispatch_id}"
        params = {"MessageSid": str(sid), "MessageStatus": "read", "To": event.data.to}
        refused = await signed_post(url, token, params)
        assert refused.status_code >= 500  # not acknowledged: the provider retries it
        async with db.read_sessions() as session:
            status = await session.scalar(select(SendLogRecord.status).where(
                SendLogRecord.dispatch_id == event.data.dispatch_id))
        assert status == "delivered"
        async with db.engine.begin() as conn:
            await conn.execute(text("ALTER TABLE provider_receipts_away RENAME TO provider_receipts"))
        retried = await signed_post(url, token, params)  # the provider's retry, once the database is back
        assert retried.status_code == 204
        await wait_for(lambda: "read" in statuses(outcomes, event.data.dispatch_id), what="read published")
