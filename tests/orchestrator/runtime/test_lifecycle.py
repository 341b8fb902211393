"""Deferral, account state, suppression and fallback, end to end through the broker and the database."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from shared.events.contracts import (
    CommunicationCeased,
    CommunicationCeasedEvent,
    DeliveryUpdated,
    DeliveryUpdatedEvent,
    DisputeOpened,
    DisputeOpenedEvent,
    DisputeResolved,
    DisputeResolvedEvent,
    PaymentReceived,
    PaymentReceivedEvent,
    PromiseBroken,
    PromiseBrokenEvent,
    PromiseMade,
    PromiseMadeEvent,
    ResponseReceived,
    ResponseReceivedEvent,
)
from tests.helpers import TopicReader, wait_for
from tests.orchestrator.conftest import T0, VIEWER, FakeClock, Orchestrator, make_settings, request_event, running

DISPATCHED = "cadencia.contact.dispatched.v1"
STATUS = "cadencia.contact.status_changed.v1"


def history(reader: TopicReader, request_id: str) -> list[tuple[str, str | None]]:
    return [(e.data.status, e.data.reason) for e in reader.of_type(STATUS) if e.data.request_id == request_id]


def dispatches(reader: TopicReader, request_id: str) -> list[object]:
    return [e for e in reader.of_type(DISPATCHED) if e.data.request_id == request_id]


async def debtor_view(o: Orchestrator, debtor_id: str) -> dict:
    response = await o.http.get(f"/v1/debtors/{debtor_id}", headers=VIEWER)
    return response.json() if response.status_code == 200 else {}


async def test_a_deferred_contact_is_released_exactly_at_its_time_once_and_survives_a_restart(
    kafka_settings, database_url, clock: FakeClock
) -> None:
    due = T0 + timedelta(hours=2)
    topics = None
    event = request_event("deb-d1", not_before=due, days_past_due=0)
    # (its own consumer group: a consumer stopped before it has joined holds its group up for seconds)
    first_settings = make_settings(kafka_settings, database_url, scheduler_interval=3600,
                                   consumer_group=f"{kafka_settings.topic_prefix}first")
    async with running(first_settings, clock) as first:
        topics = first.topics
        async with TopicReader(kafka_settings, topics.dispatch("sms"), topics.contact_status) as reader:
            result = (await first.submit(event)).json()["results"][0]
            assert result["status"] == "deferred"
            await wait_for(lambda: history(reader, event.id))
            [deferred] = [e for e in reader.of_type(STATUS) if e.data.request_id == event.id]
            assert deferred.data.not_before == due and deferred.data.rules == ["request.not_before"]
            assert await first.app.state.scheduler.release_due(due - timedelta(microseconds=1)) == 0
    # a new instance (restart) finds the deferral in the database
    async with running(make_settings(kafka_settings, database_url), clock, templates=()) as second:
        async with TopicReader(kafka_settings, topics.dispatch("sms"), topics.contact_status) as reader:
            assert await second.app.state.scheduler.release_due(due - timedelta(microseconds=1)) == 0
            clock.now = due  # the background scheduler (every 50 ms) sees the fake clock reach the time
            [dispatched] = await reader.wait_count(DISPATCHED, 1)
            assert dispatched.data.request_id == event.id
            assert await second.app.state.scheduler.release_due(due) == 0
            assert await second.app.state.scheduler.release_due(due + timedelta(days=1)) == 0
            await wait_for(lambda: ("dispatched", None) in history(reader, event.id))
            assert len(dispatches(reader, event.id)) == 1
        view = await debtor_view(second, "deb-d1")
        assert view["deferred"] == [] and len(view["ledger"]) == 1
        # leave only once joined: a consumer stopped mid-join holds its group up
        await wait_for(lambda: second.app.state.runtime_consumer.assignment, what="second instance joined")


async def test_payment_cancels_deferred_contacts_and_a_promise_defers_until_broken(
    orchestrator: Orchestrator, kafka_settings, clock: FakeClock
) -> None:
    t = orchestrator.topics
    async with TopicReader(kafka_settings, t.dispatch("sms"), t.contact_status) as reader:
        # paid: the deferred contact is cancelled, new ones are rejected
        waiting = request_event("deb-p1", not_before=T0 + timedelta(hours=1), days_past_due=0)
        assert (await orchestrator.submit(waiting)).json()["results"][0]["status"] == "deferred"
        await orchestrator.publish(t.account_events, PaymentReceivedEvent(
            subject="deb-p1", data=PaymentReceived(debtor_id="deb-p1", account_id="acc-deb-p1")))
        await wait_for(lambda: ("rejected", "paid") in history(reader, waiting.id), what="deferred contact cancelled")
        late = request_event("deb-p1", days_past_due=0)
        result = (await orchestrator.submit(late)).json()["results"][0]
        assert (result["status"], result["reason"]) == ("rejected", "paid")
        assert await orchestrator.app.state.scheduler.release_due(T0 + timedelta(hours=2)) == 0
        assert dispatches(reader, waiting.id) == [] and dispatches(reader, late.id) == []

        # promised: contacts wait for the promise date; a broken promise resumes them
        await orchestrator.publish(t.account_events, PromiseMadeEvent(
            subject="deb-p2",
            data=PromiseMade(debtor_id="deb-p2", account_id="acc-deb-p2", due_date=date(2025, 3, 14))))

        async def promised() -> bool:
            view = await debtor_view(orchestrator, "deb-p2")
            return bool(view) and view["accounts"][0]["status"] == "promised"

        await wait_for(promised, what="account promised")
        paused = request_event("deb-p2", days_past_due=0)
        result = (await orchestrator.submit(paused)).json()["results"][0]
        assert result["status"] == "deferred"
        await wait_for(lambda: history(reader, paused.id))
        [status] = [e for e in reader.of_type(STATUS) if e.data.request_id == paused.id]
        # the whole 14th is the debtor's to pay; then the first lawful hour: 08:00 on the 15th in New York
        assert status.data.not_before == datetime(2025, 3, 15, 12, 0, tzinfo=UTC)
        assert "core.promise_to_pay" in status.data.rules
        await orchestrator.publish(t.account_events, PromiseBrokenEvent(
            subject="deb-p2", data=PromiseBroken(debtor_id="deb-p2", account_id="acc-deb-p2")))
        [resumed] = await wait_for(lambda: dispatches(reader, paused.id), what="resumed after broken promise")
        assert resumed.data.channel == "sms"

        # disputed: the pack allows only the acknowledgement until the dispute is resolved
        await orchestrator.publish(t.account_events, DisputeOpenedEvent(
            subject="deb-p3", data=DisputeOpened(debtor_id="deb-p3", account_id="acc-deb-p3")))

        async def account_status(debtor_id: str, expected: str) -> bool:
            view = await debtor_view(orchestrator, debtor_id)
            return bool(view) and view["accounts"][0]["status"] == expected

        await wait_for(lambda: account_status("deb-p3", "disputed"), what="account disputed")
        result = (await orchestrator.submit(request_event("deb-p3", days_past_due=0))).json()["results"][0]
        assert result["status"] == "rejected" and "disputed" in result["reason"]
        await orchestrator.publish(t.account_events, DisputeResolvedEvent(
            subject="deb-p3", data=DisputeResolved(debtor_id="deb-p3", account_id="acc-deb-p3")))
        await wait_for(lambda: account_status("deb-p3", "active"), what="dispute resolved")
        result = (await orchestrator.submit(request_event("deb-p3", days_past_due=0))).json()["results"][0]
        assert result["status"] == "dispatched"

        # a cease scoped to one medium suppresses that medium for the debtor
        await orchestrator.publish(t.account_events, CommunicationCeasedEvent(
            subject="deb-p4", data=CommunicationCeased(debtor_id="deb-p4", account_id="acc-deb-p4", scope="sms")))

        async def ceased() -> bool:
            view = await debtor_view(orchestrator, "deb-p4")
            return bool(view) and [s["reason"] for s in view["suppressions"]] == ["ceased"]

        await wait_for(ceased, what="sms ceased")
        auto = (await orchestrator.submit(request_event("deb-p4", channel="auto", days_past_due=0))).json()
        assert auto["results"][0]["status"] == "dispatched"
        sms = (await orchestrator.submit(request_event("deb-p4", channel="sms", days_past_due=0))).json()
        assert sms["results"][0]["status"] == "rejected" and "ceased" in sms["results"][0]["reason"]


async def test_a_promise_for_the_last_day_of_the_calendar_pauses_the_account_and_intake_still_answers(
    orchestrator: Orchestrator,
) -> None:
    """A valid ``promise_made`` due 9999-12-31 has no next day to pause until: intake answered 500 for every
    later request of the account (date overflow), and the consumer failed on its deferrals the same way."""
    t = orchestrator.topics
    for debtor, due in (("deb-e1", date.max), ("deb-e2", date.min)):
        await orchestrator.publish(t.account_events, PromiseMadeEvent(
            subject=debtor, data=PromiseMade(debtor_id=debtor, account_id=f"acc-{debtor}", due_date=due)))

        async def promised(debtor: str = debtor) -> bool:
            view = await debtor_view(orchestrator, debtor)
            return bool(view) and view["accounts"][0]["status"] == "promised"

        await wait_for(promised, what=f"account of {debtor} promised")
        answer = await orchestrator.submit(request_event(debtor, days_past_due=0))
        assert answer.status_code == 202, answer.text
        [result] = answer.json()["results"]
        if due == date.max:  # paused beyond the horizon: refused, naming the promise
            assert result["status"] == "rejected" and "core.promise_to_pay" in result["reason"], result
        else:  # a promise long past pauses nothing
            assert result["status"] == "dispatched", result


async def test_stop_on_sms_suppresses_sms_but_not_email_and_confirms_once(
    orchestrator: Orchestrator, kafka_settings
) -> None:
    t = orchestrator.topics
    async with TopicReader(kafka_settings, t.dispatch("sms"), t.dispatch("email"), t.contact_status) as reader:
        first = request_event("deb-s1", channel="sms", days_past_due=0)
        await orchestrator.submit(first)
        [sent] = await wait_for(lambda: dispatches(reader, first.id))
        await orchestrator.publish(t.contact_outcomes, ResponseReceivedEvent(subject="deb-s1", data=ResponseReceived(
            debtor_id="deb-s1", dispatch_id=sent.data.dispatch_id, channel="sms", kind="opt_out", text="STOP",
            address="+12125550123", occurred_at=T0)))
        await wait_for(lambda: ("responded", "opt_out") in history(reader, first.id), what="responded")
        confirmation = await wait_for(
            lambda: [e for e in reader.of_type(DISPATCHED) if e.data.kind == "opt_out_confirmation"])
        assert confirmation[0].data.channel == "sms" and confirmation[0].data.template.key == "opt_out_confirmation"

        sms_again = request_event("deb-s1", channel="sms", days_past_due=0)
        result = (await orchestrator.submit(sms_again)).json()["results"][0]
        assert result["status"] == "rejected" and "suppressed" in result["reason"]
        email = request_event("deb-s1", channel="email", days_past_due=0)
        assert (await orchestrator.submit(email)).json()["results"][0]["status"] == "dispatched"
        auto = request_event("deb-s1", channel="auto", days_past_due=0)
        assert (await orchestrator.submit(auto)).json()["results"][0]["status"] == "dispatched"
        await wait_for(lambda: dispatches(reader, auto.id))
        assert dispatches(reader, auto.id)[0].data.channel == "email"  # SMS skipped, not the whole debtor
        view = await debtor_view(orchestrator, "deb-s1")
        assert [(s["channel"], s["reason"]) for s in view["suppressions"]] == [("sms", "opt_out")]


def delivery(dispatch, status: str, at: datetime, error: str | None = None, *, provider: str = "twilio",
             reason: str | None = None) -> DeliveryUpdatedEvent:
    d = dispatch.data
    return DeliveryUpdatedEvent(subject=d.debtor_id, data=DeliveryUpdated(
        dispatch_id=d.dispatch_id, request_id=d.request_id, debtor_id=d.debtor_id, channel=d.channel, status=status,
        provider=provider, error_code=error, occurred_at=at, reason=reason))


async def test_an_undelivered_sms_falls_back_to_email_but_never_past_expires_at(
    orchestrator: Orchestrator, kafka_settings, clock: FakeClock
) -> None:
    t = orchestrator.topics
    async with TopicReader(kafka_settings, t.dispatch("sms"), t.dispatch("email"), t.contact_status) as reader:
        event = request_event("deb-f1", channel="auto", days_past_due=0, expires_at=T0 + timedelta(hours=3))
        await orchestrator.submit(event)
        [sms] = await wait_for(lambda: dispatches(reader, event.id))
        assert (sms.data.channel, sms.data.attempt) == ("sms", 1)
        await orchestrator.publish(t.contact_outcomes, delivery(sms, "sent", T0))
        await orchestrator.publish(t.contact_outcomes, delivery(sms, "undelivered", T0, "30003"))
        await orchestrator.publish(t.contact_outcomes, delivery(sms, "undelivered", T0, "30003"))  # duplicate
        await orchestrator.publish(t.contact_outcomes, delivery(sms, "sent", T0))  # late, out of order
        both = await wait_for(lambda: len(dispatches(reader, event.id)) == 2 and dispatches(reader, event.id))
        email = both[1]
        assert (email.data.channel, email.data.attempt) == ("email", 2)
        assert email.data.dispatch_id != sms.data.dispatch_id
        await orchestrator.publish(t.contact_outcomes, delivery(email, "delivered", T0))
        await orchestrator.publish(t.contact_outcomes, delivery(email, "sent", T0))
        await wait_for(lambda: ("delivered", None) in history(reader, event.id))
        assert [s for s, _ in history(reader, event.id)] == ["dispatched", "failed", "dispatched", "delivered"]

        async def settled() -> bool:
            view = await debtor_view(orchestrator, "deb-f1")
            return len(view["outcomes"]) == 6
        await wait_for(settled, what="all outcomes applied")
        ledger = {d["id"]: d["status"] for d in (await debtor_view(orchestrator, "deb-f1"))["ledger"]}
        assert ledger == {sms.data.dispatch_id: "undelivered", email.data.dispatch_id: "delivered"}

        # past expires_at the failed contact is not moved to another channel
        short = request_event("deb-f2", channel="auto", days_past_due=0, expires_at=T0 + timedelta(hours=1))
        await orchestrator.submit(short)
        [first] = await wait_for(lambda: dispatches(reader, short.id))
        clock.advance(hours=2)
        await orchestrator.publish(t.contact_outcomes, delivery(first, "failed", clock.now, "30005"))
        await wait_for(lambda: any(s == "expired" for s, _ in history(reader, short.id)), what="expired")
        assert len(dispatches(reader, short.id)) == 1


async def test_unanswered_calls_fall_back_after_the_configured_count_and_replies_teach(
    orchestrator: Orchestrator, kafka_settings
) -> None:
    t = orchestrator.topics
    topics = (t.dispatch("voice"), t.dispatch("email"), t.dispatch("sms"), t.contact_status)
    async with TopicReader(kafka_settings, *topics) as reader:
        event = request_event("deb-n1", channel="auto", days_past_due=0,
                              debtor={"preferred_channel": "voice", "authorized_channels": ["voice", "email"]})
        await orchestrator.submit(event)
        [call1] = await wait_for(lambda: dispatches(reader, event.id))
        assert (call1.data.channel, call1.data.attempt) == ("voice", 1)
        await orchestrator.publish(t.contact_outcomes, delivery(call1, "no_answer", T0))
        call2 = await wait_for(lambda: len(dispatches(reader, event.id)) == 2 and dispatches(reader, event.id)[1])
        assert (call2.data.channel, call2.data.attempt) == ("voice", 2)  # below the count: call again
        await orchestrator.publish(t.contact_outcomes, delivery(call2, "no_answer", T0))
        email = await wait_for(lambda: len(dispatches(reader, event.id)) == 3 and dispatches(reader, event.id)[2])
        assert (email.data.channel, email.data.attempt) == ("email", 3)

        # "1" on the keypad is a promise to pay: collection pauses for the configured horizon
        await orchestrator.publish(t.contact_outcomes, ResponseReceivedEvent(subject="deb-n1", data=ResponseReceived(
            debtor_id="deb-n1", dispatch_id=call2.data.dispatch_id, channel="voice", kind="keypress", digits="1",
            occurred_at=T0)))
        await wait_for(lambda: ("responded", "promise_to_pay") in history(reader, event.id))
        later = request_event("deb-n1", channel="email", days_past_due=0)
        result = (await orchestrator.submit(later)).json()["results"][0]
        assert result["status"] == "deferred" and "promise" in result["reason"]

        await orchestrator.publish(t.contact_outcomes, ResponseReceivedEvent(subject="deb-n1", data=ResponseReceived(
            debtor_id="deb-n1", dispatch_id=email.data.dispatch_id, channel="email", kind="callback_request",
            occurred_at=T0)))
        await wait_for(lambda: ("responded", "callback_request") in history(reader, event.id))

        # an invalid number suppresses it and the contact moves on; this update predates
        # DeliveryUpdated.reason and carries only Twilio's code (21211): it is still understood
        bad = request_event("deb-n2", channel="auto", days_past_due=0)
        await orchestrator.submit(bad)
        [sms] = await wait_for(lambda: dispatches(reader, bad.id))
        await orchestrator.publish(t.contact_outcomes, delivery(sms, "failed", T0, "21211"))
        moved = await wait_for(lambda: len(dispatches(reader, bad.id)) == 2 and dispatches(reader, bad.id)[1])
        assert moved.data.channel == "email"
        view = await debtor_view(orchestrator, "deb-n2")
        assert [(s["channel"], s["reason"]) for s in view["suppressions"]] == [("sms", "invalid_number")]


async def test_a_neutral_opt_out_reason_suppresses_the_address_whatever_the_provider_code(
    orchestrator: Orchestrator, kafka_settings
) -> None:
    t = orchestrator.topics
    async with TopicReader(kafka_settings, t.dispatch("sms"), t.dispatch("email"), t.contact_status) as reader:
        event = request_event("deb-r1", channel="auto", days_past_due=0)
        await orchestrator.submit(event)
        [sms] = await wait_for(lambda: dispatches(reader, event.id))
        # a provider the orchestrator knows nothing about, with a code of its own: the reason decides
        await orchestrator.publish(t.contact_outcomes, delivery(sms, "failed", T0, "E-77", provider="acme",
                                                                reason="opted_out"))
        moved = await wait_for(lambda: len(dispatches(reader, event.id)) == 2 and dispatches(reader, event.id)[1])
        assert moved.data.channel == "email"
        view = await debtor_view(orchestrator, "deb-r1")
        assert [(s["channel"], s["reason"]) for s in view["suppressions"]] == [("sms", "opt_out")]


async def test_a_telephone_conversation_blocks_calls_for_seven_days_but_not_other_channels(
    orchestrator: Orchestrator, kafka_settings
) -> None:
    t = orchestrator.topics
    async with TopicReader(kafka_settings, t.dispatch("voice"), t.contact_status) as reader:
        call = request_event("deb-c1", channel="voice", days_past_due=0)
        await orchestrator.submit(call)
        [placed] = await wait_for(lambda: dispatches(reader, call.id))
        await orchestrator.publish(t.contact_outcomes, delivery(placed, "conversation", T0))
        await wait_for(lambda: ("delivered", None) in history(reader, call.id), what="conversation recorded")
        again = (await orchestrator.submit(request_event("deb-c1", channel="voice", days_past_due=0))).json()
        assert again["results"][0]["status"] == "deferred"
        status = (await orchestrator.http.get(f"/v1/contact-requests/{again['request_ids'][0]}", headers=VIEWER)).json()
        assert "US.reg_f.after_conversation" in status["history"][-1]["rules"]
        assert status["history"][-1]["not_before"] >= (T0 + timedelta(days=6)).isoformat()
        email = (await orchestrator.submit(request_event("deb-c1", channel="email", days_past_due=0))).json()
        assert email["results"][0]["status"] == "dispatched"
