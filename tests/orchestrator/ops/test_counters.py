"""Counters are written with the events they count: every stage reaches /v1/stats, equal to the ledger."""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy import func, select

from services.orchestrator.ops.models import CounterRow
from services.orchestrator.runtime.models import DispatchRow
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
from tests.orchestrator.conftest import T0, VIEWER, FakeClock, Orchestrator, request_event

DISPATCHED = "cadencia.contact.dispatched.v1"


def delivery(dispatch, status: str, error: str | None = None) -> DeliveryUpdatedEvent:
    d = dispatch.data
    return DeliveryUpdatedEvent(subject=d.debtor_id, data=DeliveryUpdated(
        dispatch_id=d.dispatch_id, request_id=d.request_id, debtor_id=d.debtor_id, channel=d.channel, status=status,
        provider="sandbox", error_code=error, occurred_at=T0))


async def test_every_stage_is_counted_by_channel_minute_hour_campaign_jurisdiction_segment_and_variant(
    orchestrator: Orchestrator, kafka_settings, clock: FakeClock
) -> None:
    o, t = orchestrator, orchestrator.topics
    async with TopicReader(kafka_settings, t.dispatch("sms"), t.dispatch("email")) as reader:
        def sent(request_id: str) -> list:
            return [e for e in reader.of_type(DISPATCHED) if e.data.request_id == request_id]

        texted = request_event("deb-c1", channel="sms", campaign_id="spring")
        mailed = request_event("deb-c2", channel="email", campaign_id="spring")
        bounced = request_event("deb-c3", channel="email", jurisdiction="US-MA", campaign_id="summer")
        later = request_event("deb-c4", channel="sms", not_before=T0 + timedelta(hours=2))
        unknown = request_event("deb-c5", channel="sms", template="no_such_template")
        results = (await o.submit(texted, mailed, bounced, later, unknown)).json()["results"]
        assert [r["status"] for r in results] == ["dispatched"] * 3 + ["deferred", "rejected"]
        [sms] = await wait_for(lambda: sent(texted.id))
        [mail] = await wait_for(lambda: sent(mailed.id))
        [bounce] = await wait_for(lambda: sent(bounced.id))

        await o.publish(t.contact_outcomes, delivery(sms, "delivered"))
        await o.publish(t.contact_outcomes, delivery(sms, "delivered"))  # a duplicate counts once
        await o.publish(t.contact_outcomes, delivery(mail, "delivered"))
        await o.publish(t.contact_outcomes, delivery(bounce, "bounced"))
        await o.publish(t.contact_outcomes, ResponseReceivedEvent(subject="deb-c1", data=ResponseReceived(
            debtor_id="deb-c1", dispatch_id=sms.data.dispatch_id, channel="sms", kind="opt_out", text="STOP",
            address="+12125550123", occurred_at=T0)))
        await o.publish(t.account_events, PromiseMadeEvent(subject="deb-c2", data=PromiseMade(
            debtor_id="deb-c2", account_id="acc-deb-c2", due_date=date(2025, 3, 20))))
        await o.publish(t.account_events, PaymentReceivedEvent(subject="deb-c2", data=PaymentReceived(
            debtor_id="deb-c2", account_id="acc-deb-c2")))

        async def settled() -> dict | None:
            s = (await o.http.get("/v1/stats?fresh=true", headers=VIEWER)).json()
            totals = s["totals"]
            done = all(totals.get(k) for k in ("opted_out", "paid", "promised", "failed")) and totals.get(
                "delivered") == 2
            return s if done else None

        stats = await wait_for(settled, what="every stage counted")

    totals = stats["totals"]
    # 5 requests and the opt-out confirmation the STOP triggered (a request of its own)
    assert totals["requested"] == 6 and totals["dispatched"] == 4
    assert (totals["delivered"], totals["failed"], totals["responded"], totals["opted_out"]) == (2, 1, 1, 1)
    assert (totals["promised"], totals["paid"], totals["deferred"], totals["rejected"]) == (1, 1, 1, 1)
    assert dict(stats["funnel"]) == {"requested": 6, "dispatched": 4, "delivered": 2, "responded": 1,
                                     "promised": 1, "paid": 1}
    assert stats["by_channel"]["sms"]["dispatched"] == 2 and stats["by_channel"]["email"]["failed"] == 1
    # the last hour by minute and the last days by hour, per channel
    assert sum(stats["series"]["minute"]["delivered"]["email"]) == 1
    assert stats["series"]["minute"]["delivered"]["sms"][-1] == 1
    hourly = stats["series"]["hour"]["dispatched"]
    assert len(hourly["sms"]) == len(stats["axes"]["hour"]) == 48 and hourly["sms"][-1] == 2
    b = stats["breakdowns"]
    assert b["campaign"]["spring"]["requested"] == 2 and b["campaign"]["summer"]["failed"] == 1
    assert b["jurisdiction"]["US-MA"]["dispatched"] == 1 and b["jurisdiction"]["US"]["delivered"] == 2
    assert b["segment"]["early"]["dispatched"] == 4  # the confirmation is of the same segment
    assert b["variant"]["reminder A"] == {"dispatched": 3, "delivered": 2, "failed": 1, "responded": 1,
                                          "opted_out": 1}
    assert stats["deferrals_by_rule"] == {"request.not_before": 1}
    assert stats["rejections_by_rule"] == {"intake.validation": 1}
    assert stats["failures_by_reason"] == {"bounced": 1}
    assert stats["responses"] == {"opt_out": 1}

    # the counters agree with the ledger they summarise
    async with o.app.state.ctx.db.sessions() as session:
        ledger = await session.scalar(select(func.count()).select_from(DispatchRow))
        counted = await session.scalar(select(func.sum(CounterRow.value)).where(
            CounterRow.grain == "h", CounterRow.metric == "dispatched", CounterRow.dim == "channel"))
    assert ledger == counted == 4

    # a day later the minute series is empty and the hour series has moved on
    clock.advance(days=1)
    moved = (await o.http.get("/v1/stats?fresh=true", headers=VIEWER)).json()
    assert moved["series"]["minute"] == {} and moved["series"]["hour"]["dispatched"]["sms"][-25] == 2
    async def week_stats() -> dict | None:
        s = (await o.http.get("/v1/stats?days=7", headers=VIEWER)).json()
        return s if s["deferred_pending"] == 0 else None

    # the deferred request is decided again by the scheduler (a day is past its not_before)
    week = await wait_for(week_stats, what="the deferral released by the scheduler")
    assert len(week["axes"]["hour"]) == 168
    async with o.app.state.ctx.db.sessions() as session:
        ledger = await session.scalar(select(func.count()).select_from(DispatchRow))
    assert week["totals"]["dispatched"] == ledger
