"""A consumer batch is one unit of work: it decides exactly as record by record would, caps hold
within it, a repeated event applies once, a poison record is isolated, and two instances on
PostgreSQL contending for the same debtors neither exceed a cap nor deadlock."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select

from services.orchestrator.runtime.handlers import BatchHandler, EventHandlers, apply_batch
from services.orchestrator.runtime.models import (
    AccountRow,
    ContactRequestRow,
    DeferredContactRow,
    DispatchRow,
    StatusHistoryRow,
    SuppressionRow,
)
from shared.bus import RecordMeta
from shared.config import KafkaSettings
from shared.events import CloudEvent
from shared.events.contracts import (
    DeliveryUpdated,
    DeliveryUpdatedEvent,
    PaymentReceived,
    PaymentReceivedEvent,
    PromiseMade,
    PromiseMadeEvent,
    ResponseReceived,
    ResponseReceivedEvent,
)
from tests.helpers import TopicReader, wait_for
from tests.orchestrator.conftest import EDITOR, T0, FakeClock, Orchestrator, make_settings, request_event, running

DLQ = "cadencia.dlq.dead_lettered.v1"

#: Caps a batch can hit many times over: two SMS and one e-mail per debtor per day.
CAPPED_STRATEGY = """
creditor: {name: Financiera Ejemplo, phone: "+18005550100"}
defaults:
  channels: [sms, email]
  min_gap_hours: 0
  daily_caps: {sms: 2, email: 1}
segments: []
"""


@pytest.fixture
def strategy_path(tmp_path: Path) -> str:
    path = tmp_path / "strategy.yaml"
    path.write_text(CAPPED_STRATEGY, encoding="utf-8")
    return str(path)


def scenario(prefix: str) -> list[CloudEvent]:
    """Requests for three debtors with a promise, a payment and an opt-out among them, one repeat."""
    d0, d1, d2 = (f"{prefix}-{i}" for i in range(3))
    line = {"rec": 1, "bat": 2}.get(prefix, 3)  # numbers of their own: an opt-out binds a number, not a debtor
    events: list[CloudEvent] = []
    for round_ in range(6):
        for i, debtor in enumerate((d0, d1, d2)):
            # d2 hears by e-mail and once by SMS before it opts out of SMS (one SMS: a reply without a
            # dispatch id answers the debtor's latest SMS, whichever it is)
            channel = "auto" if round_ % 2 else "email" if i == 2 else "sms"
            events.append(request_event(debtor, channel=channel, phone=f"+121255501{line}{i}",
                                        email=f"{debtor}@example.com"))
        if round_ == 2:
            events.append(PromiseMadeEvent(source="tests", subject=d0, data=PromiseMade(
                debtor_id=d0, account_id=f"acc-{d0}", due_date=date(2025, 3, 20))))
            events.append(PaymentReceivedEvent(source="tests", subject=d1, data=PaymentReceived(
                debtor_id=d1, account_id=f"acc-{d1}")))
            events.append(ResponseReceivedEvent(source="tests", subject=d2, data=ResponseReceived(
                debtor_id=d2, channel="sms", kind="opt_out", text="STOP", occurred_at=T0)))
    events.insert(5, events[1])  # a redelivery within the batch
    return events


OUTCOMES = ("delivered", "undelivered", "sent", "bounced", "read")


async def outcomes(o: Orchestrator, events: list[CloudEvent], prefix: str) -> list[CloudEvent]:
    """Delivery outcomes for a run's dispatches, in request order: deliveries, failures that fall back
    to the next channel, a bounce, a repeat and a late outcome that must not move a status back."""
    position = {e.id: i for i, e in enumerate(events)}
    async with o.app.state.ctx.db.sessions() as session:
        dispatches = (await session.execute(select(DispatchRow).where(DispatchRow.debtor_id.like(f"{prefix}-%"))
                                            )).scalars().all()
    ordered = sorted(dispatches, key=lambda d: (position.get(d.request_id, len(events)), d.attempt))
    found: list[CloudEvent] = []
    for i, d in enumerate(ordered):
        status = OUTCOMES[i % len(OUTCOMES)]
        found.append(DeliveryUpdatedEvent(source="tests", subject=d.debtor_id, data=DeliveryUpdated(
            dispatch_id=d.id, request_id=d.request_id, debtor_id=d.debtor_id, channel=d.channel, status=status,
            provider="sandbox", error_code="30003" if status == "undelivered" else None, occurred_at=T0)))
        if status == "delivered":
            found.append(found[-1])  # redelivered
            found.append(DeliveryUpdatedEvent(source="tests", subject=d.debtor_id, data=found[-1].data.model_copy(
                update={"status": "sent"})))  # late: never moves the status back
    return found


def with_meta(o: Orchestrator, events: list[CloudEvent]) -> list[tuple[CloudEvent, RecordMeta]]:
    t = o.topics
    topic = {"cadencia.contact.requested.v1": t.contact_requests, "cadencia.contact.response_received.v1":
             t.contact_outcomes, "cadencia.contact.delivery_updated.v1": t.contact_outcomes}
    return [(e, RecordMeta(topic.get(e.type, t.account_events), 0, i, (e.subject or "").encode()))
            for i, e in enumerate(events)]


async def snapshot(o: Orchestrator, events: list[CloudEvent], prefix: str) -> dict[str, Any]:
    """Everything the events decided, with ids replaced by positions so two runs compare."""
    position = {e.id: i for i, e in enumerate(events)}
    async with o.app.state.ctx.db.sessions() as session:
        def rows(stmt: Any) -> Any:
            return session.execute(stmt)

        history = (await rows(select(StatusHistoryRow).where(StatusHistoryRow.debtor_id.like(f"{prefix}-%"))
                              .order_by(StatusHistoryRow.id))).scalars().all()
        dispatches = (await rows(select(DispatchRow).where(DispatchRow.debtor_id.like(f"{prefix}-%")))).scalars().all()
        deferrals = (await rows(select(DeferredContactRow).where(DeferredContactRow.debtor_id.like(f"{prefix}-%"))
                                .order_by(DeferredContactRow.id))).scalars().all()
        accounts = (await rows(select(AccountRow).where(AccountRow.debtor_id.like(f"{prefix}-%"))
                               .order_by(AccountRow.id))).scalars().all()
        suppressions = (await rows(select(SuppressionRow).where(SuppressionRow.debtor_id.like(f"{prefix}-%"))
                                   .order_by(SuppressionRow.id))).scalars().all()
        requests = (await rows(select(ContactRequestRow).where(ContactRequestRow.debtor_id.like(f"{prefix}-%"))
                               )).scalars().all()

    def at(request_id: str) -> Any:
        return position.get(request_id, "internal")

    return {
        "history": Counter((at(h.request_id), h.status, h.reason, h.channel, tuple(h.rules), h.not_before)
                           for h in history),
        "dispatches": sorted((str(at(d.request_id)), d.attempt, d.channel, d.status, d.template_key)
                             for d in dispatches),
        "deferrals": sorted((str(at(d.request_id)), d.state, d.not_before.isoformat(), tuple(d.rules))
                            for d in deferrals),
        "accounts": [(a.id.replace(prefix, ""), a.status, a.promise_date) for a in accounts],
        "suppressions": [(s.channel, s.reason) for s in suppressions],
        "requests": sorted((str(at(r.id)), r.status, r.intake_status, r.attempts) for r in requests),
    }


async def test_a_batch_decides_exactly_as_record_by_record_and_holds_the_caps_within_it(
    kafka_settings: KafkaSettings, database_url: str, clock: FakeClock, strategy_path: str
) -> None:
    settings = make_settings(kafka_settings, database_url, strategy_path=strategy_path)
    async with running(settings, clock, ("reminder", "opt_out_confirmation")) as o:
        one_by_one, batched = scenario("rec"), scenario("bat")
        handler = EventHandlers(o.runtime)
        for event, meta in with_meta(o, one_by_one):
            await handler(event, meta)
        await BatchHandler(o.runtime)(with_meta(o, batched))

        alone, together = await snapshot(o, one_by_one, "rec"), await snapshot(o, batched, "bat")
        assert together == alone
        sent = Counter((d[2]) for d in together["dispatches"])
        # three debtors; d0 promised and d1 paid after round 3, d2 opted out of SMS: the caps bound the rest
        per_debtor = Counter()
        async with o.app.state.ctx.db.sessions() as session:
            for debtor_id, channel in (await session.execute(
                select(DispatchRow.debtor_id, DispatchRow.channel).where(DispatchRow.debtor_id.like("bat-%"))
            )).all():
                per_debtor[(debtor_id, channel)] += 1
        assert per_debtor and all(n <= {"sms": 2, "email": 1}[c] for (_, c), n in per_debtor.items())
        assert per_debtor[("bat-0", "sms")] == 2 and per_debtor[("bat-1", "sms")] == 2
        assert sent["email"] >= 1
        assert ("sms", "opt_out") in together["suppressions"]
        assert [a[1] for a in together["accounts"]] == ["promised", "paid", "active"]
        statuses = Counter(r[1] for r in together["requests"] if r[0] != "internal")
        assert statuses["deferred"] > 0 and statuses["rejected"] > 0 and statuses["dispatched"] > 0

        # Then the channels' outcomes, again one by one against one batch.
        later_alone, later_together = await outcomes(o, one_by_one, "rec"), await outcomes(o, batched, "bat")
        for event, meta in with_meta(o, later_alone):
            await handler(event, meta)
        await BatchHandler(o.runtime)(with_meta(o, later_together))
        alone, together = await snapshot(o, one_by_one, "rec"), await snapshot(o, batched, "bat")
        assert together == alone
        assert {d[3] for d in together["dispatches"]} >= {"delivered", "undelivered", "bounced"}
        assert any(r[1] == "failed" for r in together["requests"]) or len(together["dispatches"]) > sum(sent.values())


async def test_a_repeated_event_applies_once_within_and_across_batches(orchestrator: Orchestrator) -> None:
    rt = orchestrator.runtime
    first, second, third = (request_event(f"deb-dup-{i}") for i in range(3))
    results = await apply_batch(rt, [(first, None), (first, None), (second, None)], scoped=False)
    assert [r.duplicate for r in results] == [False, True, False]
    assert results[1].status == results[0].status == "dispatched"
    again = await apply_batch(rt, [(second, None), (first, None), (third, None)], scoped=False)
    assert [(r.request_id, r.duplicate) for r in again] == [(second.id, True), (first.id, True), (third.id, False)]
    answer = await orchestrator.submit(first, third)
    assert [r["duplicate"] for r in answer.json()["results"]] == [True, True]
    async with orchestrator.app.state.ctx.db.sessions() as session:
        dispatched = (await session.execute(
            select(DispatchRow.request_id, func.count()).where(DispatchRow.debtor_id.like("deb-dup-%"))
            .group_by(DispatchRow.request_id)
        )).all()
        history = await session.scalar(select(func.count()).select_from(StatusHistoryRow)
                                       .where(StatusHistoryRow.debtor_id.like("deb-dup-%")))
    assert sorted(dispatched) == sorted([(first.id, 1), (second.id, 1), (third.id, 1)])
    assert history == 3


async def test_a_poison_record_in_a_batch_is_dead_lettered_and_the_rest_apply(
    orchestrator: Orchestrator, kafka_settings: KafkaSettings
) -> None:
    t = orchestrator.topics
    good = [request_event(f"deb-poison-{i}") for i in range(12)]
    # an account event is a known type, but it does not belong on contact.requests: permanent, per record
    poison = PaymentReceivedEvent(source="tests", subject="deb-poison-3",
                                  data=PaymentReceived(debtor_id="deb-poison-3", account_id="acc-deb-poison-3"))
    runner = orchestrator.app.state.runtime_consumer
    async with TopicReader(kafka_settings, t.dlq) as dlq:
        await orchestrator.app.state.ctx.producer.publish_many(
            [(t.contact_requests, e) for e in good[:6]] + [(t.contact_requests, poison)]
            + [(t.contact_requests, e) for e in good[6:]])
        [letter] = await dlq.wait_count(DLQ, 1)
        assert "does not belong on" in letter.data.error

        async def all_decided() -> bool:
            async with orchestrator.app.state.ctx.db.sessions() as session:
                n = await session.scalar(select(func.count()).select_from(ContactRequestRow)
                                         .where(ContactRequestRow.id.in_([e.id for e in good])))
            return n == len(good)

        await wait_for(all_decided, what="every good request decided")
    assert runner.batch_fallbacks >= 1
    async with orchestrator.app.state.ctx.db.sessions() as session:
        statuses = (await session.execute(select(ContactRequestRow.status)
                                          .where(ContactRequestRow.id.in_([e.id for e in good])))).scalars().all()
        account = await session.get(AccountRow, "acc-deb-poison-3")
    assert set(statuses) == {"dispatched"}
    assert account is not None and account.status == "active"  # the poison changed nothing


@pytest.mark.postgres
async def test_two_instances_consuming_the_same_debtors_never_exceed_a_cap_nor_deadlock(
    kafka_settings: KafkaSettings, pg_database_url: str, clock: FakeClock, strategy_path: str
) -> None:
    # Two consumer groups on one topic: both instances read every record, so they contend for the same
    # debtors in overlapping batches (the inbox lets one of them apply each record).
    prefix = kafka_settings.topic_prefix
    first = make_settings(kafka_settings, pg_database_url, strategy_path=strategy_path,
                          consumer_group=f"{prefix}orchestrator-a")
    second = make_settings(kafka_settings, pg_database_url, strategy_path=strategy_path,
                           consumer_group=f"{prefix}orchestrator-b")
    debtors = [f"deb-race-{i}" for i in range(8)]
    burst = [request_event(debtors[(i * 5) % len(debtors)], channel="sms") for i in range(160)]
    async with running(first, clock) as a, running(second, clock, templates=()) as b:
        t = a.topics
        async with TopicReader(kafka_settings, t.dlq) as dlq:
            for i in range(0, len(burst), 40):
                await a.app.state.ctx.producer.publish_many([(t.contact_requests, e) for e in burst[i:i + 40]])
            extra = [request_event(d, channel="sms") for d in debtors]  # and over HTTP, to either instance
            answers = [await (a if i % 2 else b).http.post("/v1/contact-requests", headers=EDITOR,
                                                           json=e.model_dump(mode="json"))
                       for i, e in enumerate(extra)]
            assert {r.status_code for r in answers} == {202}

            def consumed() -> bool:
                return all(o.app.state.runtime_consumer.handled >= len(burst) for o in (a, b))

            await wait_for(consumed, timeout=60, what="both instances through the burst")
            assert dlq.of_type(DLQ) == []
        runners = [o.app.state.runtime_consumer for o in (a, b)]
        assert [r.batch_fallbacks for r in runners] == [0, 0]  # no batch failed (a deadlock would fail one)
        async with a.app.state.ctx.db.sessions() as session:
            requests = await session.scalar(select(func.count()).select_from(ContactRequestRow)
                                            .where(ContactRequestRow.debtor_id.like("deb-race-%")))
            sent = dict((await session.execute(
                select(DispatchRow.debtor_id, func.count()).where(DispatchRow.debtor_id.like("deb-race-%"))
                .group_by(DispatchRow.debtor_id)
            )).all())
    assert requests == len(burst) + len(extra)
    assert sent == dict.fromkeys(debtors, 2)  # the daily SMS cap, exactly, for every debtor



async def test_a_batch_asks_the_same_statements_whatever_its_size(orchestrator: Orchestrator) -> None:
    """Set-based: a batch of twelve requests runs the statements a batch of two does, and reads the
    published templates once for both of its keys (the requested key and one nobody published)."""
    rt, engine = orchestrator.runtime, orchestrator.app.state.ctx.db.engine.sync_engine
    seen: list[str] = []
    ours = asyncio.current_task()  # not the relay's or the consumers' statements

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if asyncio.current_task() is ours:  # a batch's rows and ids make a list of its own length
            seen.append(re.sub(r"VALUES \(.*?\)(, \(.*?\))*|IN \([^()]*\)", "…", " ".join(statement.split())))

    def batch(prefix: str, size: int) -> list[tuple[CloudEvent, None]]:
        return [(request_event(f"{prefix}-{i}", template="reminder" if i % 2 else "never_published"), None)
                for i in range(size)]

    counted: dict[int, Counter[str]] = {}
    await apply_batch(rt, batch("deb-warm", 2), scoped=False)  # the pinned version's content is read once
    event.listen(engine, "before_cursor_execute", record)
    try:
        for size in (2, 12):
            seen.clear()
            results = await apply_batch(rt, batch(f"deb-size{size}", size), scoped=False)
            assert Counter(r.status for r in results) == {"dispatched": size // 2, "rejected": size // 2}
            counted[size] = Counter(seen)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert counted[2] == counted[12]
    reads = [s for s in counted[12].elements() if "FROM template_published" in s]
    assert len(reads) == 1, reads
