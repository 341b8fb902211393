"""The self-service page through the real app, broker and both databases: promise, plan, refusals, replies."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import select

from services.orchestrator.runtime.models import AccountRow
from services.orchestrator.selfservice import links
from shared.db.inbox import InboxRecord
from shared.events.contracts import ResponseReceived, ResponseReceivedEvent
from shared.templates import format_money
from tests.helpers import TopicReader, wait_for
from tests.orchestrator.conftest import VIEWER, FakeClock, Orchestrator, request_event
from tests.orchestrator.selfservice.conftest import token_of

DISPATCHED = "cadencia.contact.dispatched.v1"
STATUS = "cadencia.contact.status_changed.v1"
PROMISE = "cadencia.account.promise_made.v1"
#: 23:30 in New York (EDT): outside the US pack's contact hours.
NIGHT = datetime(2025, 3, 13, 3, 30, tzinfo=UTC)
#: 08:00 the next morning in New York, the first lawful minute.
MORNING = datetime(2025, 3, 13, 12, 0, tzinfo=UTC)


def hidden(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no hidden {name}"
    return found.group(1)


async def link_of(o: Orchestrator, reader: TopicReader, debtor_id: str) -> str:
    event = request_event(debtor_id, days_past_due=0)
    assert (await o.submit(event)).json()["results"][0]["status"] == "dispatched"
    [dispatched] = await wait_for(lambda: [e for e in reader.of_type(DISPATCHED) if e.data.request_id == event.id])
    url = dispatched.data.variables["account"]["self_service_url"]
    assert url.startswith("https://cad.example/s/")
    return token_of(url)


async def _consumed(o: Orchestrator, events: list) -> bool:
    """Every one of ``events`` went through the orchestrator's consumer (its inbox holds their ids)."""
    async with o.app.state.ctx.db.sessions() as session:
        seen = (await session.execute(select(InboxRecord.event_id).where(
            InboxRecord.event_id.in_([e.id for e in events])))).scalars().all()
    return len(seen) == len(events)


async def account_status(o: Orchestrator, debtor_id: str) -> dict:
    view = (await o.http.get(f"/v1/debtors/{debtor_id}", headers=VIEWER)).json()
    return view["accounts"][0]


def statuses_of_others(reader: TopicReader, debtor_id: str, known: set[str]) -> list:
    return [e for e in reader.of_type(STATUS) if e.data.debtor_id == debtor_id and e.data.request_id not in known]


async def test_a_promise_signed_at_night_pauses_collection_and_is_confirmed_in_the_morning(
    orchestrator: Orchestrator, kafka_settings, clock: FakeClock
) -> None:
    o, t = orchestrator, orchestrator.topics
    async with TopicReader(kafka_settings, t.dispatch("sms"), t.contact_status, t.account_events) as reader:
        token = await link_of(o, reader, "deb-s1")
        first_requests = {e.data.request_id for e in reader.of_type(STATUS)}
        clock.now = NIGHT  # the page answers at any hour: it is the debtor acting, not a contact

        page = await o.http.get(f"/s/{token}")
        assert page.status_code == 200 and '<html lang="es">' in page.text
        assert format_money(Decimal("1234.50"), "USD", "es-MX") in page.text and "Cadencia Demo" in page.text
        assert 'href="https://pay.example.com/x"' in page.text
        assert "<script" not in page.text and "set-cookie" not in page.headers
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert page.headers["referrer-policy"] == "no-referrer"

        # outside the strategy's limits: refused with the reason, on the page
        review_url = f"/s/{token}/review"
        bad = await o.http.post(review_url, data={"choice": "promise", "amount": "5000", "date": "2025-03-20"})
        assert bad.status_code == 422 and 'data-field="amount"' in bad.text
        late = await o.http.post(review_url, data={"choice": "promise", "amount": "500", "date": "2025-06-01"})
        assert late.status_code == 422 and 'data-field="date"' in late.text

        form = {"choice": "promise", "amount": "500.00", "date": "2025-03-20"}
        review = await o.http.post(f"/s/{token}/review", data=form)
        assert review.status_code == 200 and format_money(Decimal("500"), "USD", "es-MX") in review.text
        signed = {**form, "submission_id": hidden(review.text, "submission_id")}
        unsigned = await o.http.post(f"/s/{token}/confirm", data={**signed, "signed_name": "Someone Else"})
        assert unsigned.status_code == 422 and 'data-field="signed_name"' in unsigned.text
        assert 'data-field="agree"' in unsigned.text

        confirm_url = f"/s/{token}/confirm"
        confirmed = await o.http.post(confirm_url, data={**signed, "signed_name": "ana  perez", "agree": "yes"})
        assert confirmed.status_code == 303
        done_url = confirmed.headers["location"]
        again = await o.http.post(f"/s/{token}/confirm", data={**signed, "signed_name": "Ana Pérez", "agree": "yes"})
        assert again.headers["location"] == done_url  # a double submit is one agreement
        agreement_id = done_url.rsplit("/", 1)[1]

        done = await o.http.get(done_url)
        assert done.status_code == 200 and f'href="{done_url}.pdf"' in done.text
        debtor_pdf = await o.http.get(f"{done_url}.pdf")
        assert debtor_pdf.headers["content-type"] == "application/pdf" and debtor_pdf.content.startswith(b"%PDF-1.4")
        digest = debtor_pdf.headers["x-terms-sha256"]
        assert digest.encode() in debtor_pdf.content and b"ana  perez" in debtor_pdf.content

        listing = (await o.http.get("/v1/agreements", params={"debtor_id": "deb-s1"}, headers=VIEWER)).json()
        [agreement] = listing["items"]
        assert (agreement["id"], agreement["terms_sha256"], agreement["choice"]) == (agreement_id, digest, "promise")
        assert agreement["terms"]["instalments"] == [{"due_date": "2025-03-20", "amount": "500.00"}]
        ops_pdf = await o.http.get(f"/v1/agreements/{agreement_id}/pdf", headers=VIEWER)
        assert ops_pdf.content == debtor_pdf.content
        assert (await o.http.get(f"/v1/agreements/{agreement_id}/pdf")).status_code == 401

        [promise] = await reader.wait_count(PROMISE, 1)
        assert (promise.data.debtor_id, promise.data.account_id, promise.data.amount, promise.data.due_date) == (
            "deb-s1", "acc-deb-s1", Decimal("500.00"), date(2025, 3, 20))
        assert (promise.data.agreement_id, promise.data.instalment, promise.data.instalments) == (agreement_id, 1, 1)

        account = await account_status(o, "deb-s1")
        assert account["status"] == "promised"
        paused = request_event("deb-s1", days_past_due=0)
        clock.now = MORNING
        result = (await o.submit(paused)).json()["results"][0]
        assert result["status"] == "deferred" and "promise to pay" in result["reason"]

        # the confirmation is a contact: deferred at night to the first lawful minute, then sent once
        known = first_requests | {paused.id}
        deferrals = await wait_for(lambda: [e for e in statuses_of_others(reader, "deb-s1", known)
                                            if e.data.status == "deferred"], what="confirmation deferred")
        # (re-decided, to the same minute, when the published promise comes back through the consumer)
        assert {(e.data.request_id, e.data.not_before) for e in deferrals} == {(deferrals[0].data.request_id, MORNING)}
        deferred = deferrals[0]
        assert await o.app.state.scheduler.release_due(MORNING) >= 0
        [confirmation] = await wait_for(lambda: [e for e in reader.of_type(DISPATCHED)
                                                 if e.data.request_id == deferred.data.request_id])
        assert confirmation.data.kind == "promise_confirmation" and confirmation.data.channel == "sms"
        assert confirmation.data.template.key == "promise_confirmation"
        assert confirmation.data.variables["promise_amount"] == "500.00"
        assert confirmation.data.variables["promise_date"] == "2025-03-20"
        assert len(reader.of_type(PROMISE)) == 1


async def test_a_payment_plan_publishes_one_promise_per_instalment_summing_to_the_balance(
    orchestrator: Orchestrator, kafka_settings, clock: FakeClock
) -> None:
    o, t = orchestrator, orchestrator.topics
    async with TopicReader(kafka_settings, t.dispatch("sms"), t.contact_status, t.account_events) as reader:
        token = await link_of(o, reader, "deb-s2")
        page = (await o.http.get(f"/s/{token}")).text
        offered = re.findall(r'name="count" value="(\d+)"', page)
        assert offered == ["2", "3", "4", "5", "6"]  # the shipped strategy: 2..6, each at least 50
        form = {"choice": "plan", "count": "3", "first_date": "2025-03-20"}
        review = await o.http.post(f"/s/{token}/review", data=form)
        assert review.status_code == 200
        confirmed = await o.http.post(f"/s/{token}/confirm", data={
            **form, "submission_id": hidden(review.text, "submission_id"), "signed_name": "Ana Pérez", "agree": "yes"})
        assert confirmed.status_code == 303

        promises = await reader.wait_count(PROMISE, 3)
        assert [p.data.instalment for p in promises] == [1, 2, 3]
        assert [p.data.due_date for p in promises] == [date(2025, 3, 20), date(2025, 4, 19), date(2025, 5, 19)]
        assert sum(p.data.amount for p in promises) == Decimal("1234.50")
        assert [p.data.amount for p in promises] == [Decimal("411.50"), Decimal("411.50"), Decimal("411.50")]

        # paused through the last instalment's date (the consumer applied the three in order)
        async def promise_date() -> date | None:
            async with o.app.state.ctx.db.sessions() as session:
                account = await session.get(AccountRow, "acc-deb-s2")
                return account.promise_date if account is not None else None

        await wait_for(lambda: _consumed(o, promises), what="the three promises applied by the consumer")
        assert await promise_date() == date(2025, 5, 19)
        paused = request_event("deb-s2", days_past_due=0)
        result = (await o.submit(paused)).json()["results"][0]
        # paused through the whole 19th of May (past the policy's 60-day horizon, so not even deferred)
        assert "core.promise_to_pay" in result["reason"] and "2025-05-20 00:00" in result["reason"], result
        assert not [e for e in reader.of_type(DISPATCHED) if e.data.request_id == paused.id]


async def test_an_expired_or_tampered_link_is_refused(orchestrator: Orchestrator, kafka_settings, clock: FakeClock
                                                      ) -> None:
    o, t = orchestrator, orchestrator.topics
    async with TopicReader(kafka_settings, t.dispatch("sms"), t.contact_status) as reader:
        token = await link_of(o, reader, "deb-s5")
    assert (await o.http.get(f"/s/{token}")).status_code == 200
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    tampered = await o.http.get(f"/s/{flipped}")
    assert tampered.status_code == 403 and 'data-reason="invalid"' in tampered.text
    # another account's expiry bytes with this account's ref: the signature no longer matches
    forged = links.sign(b"not-the-secret", "deb-s5", "acc-deb-s5", date(2030, 1, 1))
    assert (await o.http.get(f"/s/{forged}")).status_code == 403
    assert (await o.http.post(f"/s/{flipped}/review", data={"choice": "promise"})).status_code == 403
    clock.advance(days=15)  # past the strategy's 14-day lifetime
    expired = await o.http.get(f"/s/{token}")
    assert expired.status_code == 410 and 'data-reason="expired"' in expired.text
    assert (await o.http.post(f"/s/{token}/confirm", data={"choice": "promise"})).status_code == 410


async def test_a_night_pagar_reply_gets_the_link_in_the_morning_and_a_daytime_one_at_once(
    orchestrator: Orchestrator, kafka_settings, clock: FakeClock
) -> None:
    o, t = orchestrator, orchestrator.topics
    async with TopicReader(kafka_settings, t.dispatch("sms"), t.contact_status) as reader:
        for debtor_id in ("deb-s3", "deb-s4"):
            await link_of(o, reader, debtor_id)
        known = {e.data.request_id for e in reader.of_type(STATUS)}
        originals = {e.data.debtor_id: e.data.dispatch_id for e in reader.of_type(DISPATCHED)}

        async def reply(debtor_id: str) -> None:
            await o.publish(t.contact_outcomes, ResponseReceivedEvent(subject=debtor_id, data=ResponseReceived(
                debtor_id=debtor_id, dispatch_id=originals[debtor_id], channel="sms", kind="promise_to_pay",
                text="quiero pagar", address="+12125550123", occurred_at=clock.now)))

        clock.now = NIGHT
        await reply("deb-s3")
        [deferred] = await wait_for(lambda: [e for e in statuses_of_others(reader, "deb-s3", known)
                                             if e.data.status == "deferred"], what="night answer deferred")
        assert deferred.data.not_before == MORNING and "hours" in (deferred.data.reason or "")
        clock.now = MORNING
        await o.app.state.scheduler.release_due(MORNING)
        [answer] = await wait_for(lambda: [e for e in reader.of_type(DISPATCHED)
                                           if e.data.request_id == deferred.data.request_id])
        assert answer.data.template.key == "self_service_link" and answer.data.kind == "self_service_link"
        assert answer.data.variables["account"]["self_service_url"].startswith("https://cad.example/s/")

        clock.now = MORNING + timedelta(hours=3)
        await reply("deb-s4")
        [now_answer] = await wait_for(lambda: [e for e in reader.of_type(DISPATCHED) if e.data.debtor_id == "deb-s4"
                                               and e.data.kind == "self_service_link"], what="daytime answer")
        assert now_answer.data.channel == "sms"
