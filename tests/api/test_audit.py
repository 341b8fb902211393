"""A debtor's audit record through the API: attempts with their exact content, decisions, responses, opt-outs."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

from shared.config import KafkaSettings
from shared.events.contracts import (
    DeliveryUpdated,
    DeliveryUpdatedEvent,
    ResponseReceived,
    ResponseReceivedEvent,
)
from shared.templates import render_dispatch
from tests.helpers import TopicReader, wait_for
from tests.orchestrator.conftest import T0, FakeClock, make_settings, request_event, running

ADMIN = {"Authorization": "Bearer admin-key"}
VIEWER = {"Authorization": "Bearer viewer-key"}


async def test_the_audit_record_holds_every_attempt_its_content_the_rules_responses_and_opt_outs(
    kafka_settings: KafkaSettings, database_url: str
) -> None:
    clock = FakeClock()
    async with running(make_settings(kafka_settings, database_url), clock,
                       ("reminder", "opt_out_confirmation")) as o:
        t = o.topics
        async with TopicReader(kafka_settings, t.dispatch("sms")) as reader:
            first = request_event("deb-audit", channel="sms", days_past_due=0)
            assert (await o.submit(first)).json()["results"][0]["status"] == "dispatched"
            [sent] = await wait_for(lambda: [e for e in reader.events if e.data.request_id == first.id])
            await o.publish(t.contact_outcomes, DeliveryUpdatedEvent(subject="deb-audit", data=DeliveryUpdated(
                dispatch_id=sent.data.dispatch_id, request_id=first.id, debtor_id="deb-audit", channel="sms",
                status="delivered", provider="twilio", occurred_at=T0 + timedelta(seconds=5))))
            await o.publish(t.contact_outcomes, ResponseReceivedEvent(subject="deb-audit", data=ResponseReceived(
                debtor_id="deb-audit", dispatch_id=sent.data.dispatch_id, channel="sms", kind="opt_out", text="STOP",
                address="+12125550123", occurred_at=T0 + timedelta(seconds=9))))

            async def opted_out() -> bool:
                view = (await o.http.get("/v1/debtors/deb-audit", headers=VIEWER)).json()
                return bool(view["suppressions"]) and bool(view["outcomes"])

            await wait_for(opted_out, what="opt-out and delivery applied")
            again = request_event("deb-audit", channel="sms", days_past_due=0)
            refused = (await o.submit(again)).json()["results"][0]
            assert refused["status"] == "rejected"

        async def record() -> dict | None:
            answer = await o.http.get("/v1/debtors/deb-audit/audit", headers=ADMIN)
            body = answer.json()
            attempts = [e for e in body.get("entries", []) if e["entry"] == "contact_attempt"]
            # the opt-out confirmation is an attempt too; wait until both contents are recorded
            return body if len(attempts) == 2 and all(a["content"] for a in attempts) else None

        audit = await wait_for(record, what="contents recorded")
        entries = audit["entries"]
        kinds = [e["entry"] for e in entries]
        assert {"request", "decision", "contact_attempt", "delivery", "response", "opt_out"} <= set(kinds)

        # The exact text the debtor received: the pinned version rendered with the dispatch's own data.
        reminder = next(e for e in entries if e["entry"] == "contact_attempt" and e["request_id"] == first.id)
        from services.orchestrator.templates import template_store

        async with o.app.state.ctx.db.sessions() as session:
            pinned = await template_store.get_version(session, sent.data.template.key, sent.data.template.version)
        expected = render_dispatch(pinned.as_published(), sent.data.variables).body
        assert reminder["content"] == {"body": expected} and "tienes un saldo pendiente" in expected
        assert reminder["address"] == "+12125550123" and reminder["template"] == f"reminder@{pinned.version}"

        # The rule decision that refused the second request says which rule.
        refusal = [e for e in entries if e["entry"] == "decision" and e["request_id"] == again.id]
        assert refusal and refusal[-1]["status"] == "rejected" and refusal[-1]["rules"]
        response = next(e for e in entries if e["entry"] == "response")
        assert (response["status"], response["response"]) == ("opt_out", "STOP")
        opt_out = next(e for e in entries if e["entry"] == "opt_out")
        assert (opt_out["channel"], opt_out["status"]) == ("sms", "opt_out")
        assert [e["at"] for e in entries] == sorted(e["at"] for e in entries)

        # The same record as CSV, one row per entry, the content as its JSON.
        exported = await o.http.get("/v1/debtors/deb-audit/audit", params={"format": "csv"}, headers=ADMIN)
        assert exported.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(exported.text)))
        assert [r["entry"] for r in rows] == kinds
        csv_attempt = next(r for r in rows
                           if r["entry"] == "contact_attempt" and r["dispatch_id"] == reminder["dispatch_id"])
        assert json.loads(csv_attempt["content"]) == {"body": expected}

        # It holds addresses and message text: admins only; an unknown debtor is a 404 problem.
        assert (await o.http.get("/v1/debtors/deb-audit/audit", headers=VIEWER)).status_code == 403
        missing = await o.http.get("/v1/debtors/nobody/audit", headers=ADMIN)
        assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"


async def test_a_dispatch_is_recorded_once_whatever_the_redeliveries(kafka_settings: KafkaSettings,
                                                                      database_url: str) -> None:
    from sqlalchemy import select

    from services.orchestrator.audit.models import DispatchContentRow

    clock = FakeClock()
    async with running(make_settings(kafka_settings, database_url), clock) as o:
        async with TopicReader(kafka_settings, o.topics.dispatch("sms")) as reader:
            request = request_event("deb-audit-once", channel="sms", days_past_due=0)
            assert (await o.submit(request)).json()["results"][0]["status"] == "dispatched"
            [sent] = await wait_for(lambda: [e for e in reader.events if e.data.request_id == request.id])
        consumer = o.app.state.audit_consumer

        async def handled(n: int) -> bool:
            return bool(consumer.handled >= n)

        await wait_for(lambda: handled(1), what="the dispatch recorded")
        # The same event again, and another event naming the same dispatch: still one record.
        await o.publish(o.topics.dispatch("sms"), sent)
        await o.publish(o.topics.dispatch("sms"), sent.model_copy(update={"id": "another-event-id"}))
        await wait_for(lambda: handled(3), what="the redeliveries handled")
        async with o.app.state.ctx.db.sessions() as session:
            rows = (await session.execute(select(DispatchContentRow))).scalars().all()
        assert [r.dispatch_id for r in rows] == [sent.data.dispatch_id]
        assert rows[0].content is not None and rows[0].render_error is None
