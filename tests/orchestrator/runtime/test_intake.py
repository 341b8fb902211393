"""Intake: Kafka and HTTP take the same path to a dispatch; invalid input is rejected or dead-lettered."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from services.orchestrator.runtime.handlers import apply_request
from shared.events.contracts import ContactDispatchedEvent
from tests.helpers import TopicReader, wait_for
from tests.orchestrator.conftest import T0, VIEWER, FakeClock, Orchestrator, request_event

DISPATCHED = "cadencia.contact.dispatched.v1"
STATUS = "cadencia.contact.status_changed.v1"
DLQ = "cadencia.dlq.dead_lettered.v1"


def statuses(reader: TopicReader, request_id: str) -> list[str]:
    return [e.data.status for e in reader.of_type(STATUS) if e.data.request_id == request_id]


async def test_a_request_from_kafka_is_dispatched_on_its_channel_topic(
    orchestrator: Orchestrator, kafka_settings, clock: FakeClock
) -> None:
    t = orchestrator.topics
    async with TopicReader(kafka_settings, t.dispatch("sms"), t.dispatch("email"), t.contact_status) as reader:
        event = request_event("deb-k1", channel="auto", expires_at=T0 + timedelta(hours=2))
        await orchestrator.publish(t.contact_requests, event)
        [dispatched] = await reader.wait_count(DISPATCHED, 1)
        assert isinstance(dispatched, ContactDispatchedEvent)
        assert dispatched.data.request_id == event.id
        assert dispatched.data.channel == "sms"  # early segment: SMS first
        assert reader.raw[0].topic in (t.dispatch("sms"), t.contact_status)
        assert [r.topic for r in reader.raw if b"contact.dispatched" in r.value] == [t.dispatch("sms")]
        assert dispatched.data.to == "+12125550123"
        assert dispatched.data.template.key == "reminder" and dispatched.data.template.version >= 1
        assert dispatched.data.deadline == T0 + timedelta(hours=2)  # expires_at is sooner than the send window
        assert dispatched.data.variables["account"]["balance"] == "1234.50"
        assert dispatched.data.variables["debtor"]["first_name"] == "Ana"
        await wait_for(lambda: statuses(reader, event.id) == ["dispatched"])

    response = await orchestrator.http.get(f"/v1/contact-requests/{event.id}", headers=VIEWER)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "dispatched" and body["dispatches"][0]["id"] == dispatched.data.dispatch_id


async def test_http_intake_uses_the_same_path_and_repeated_ids_answer_the_original_result(
    orchestrator: Orchestrator, kafka_settings
) -> None:
    t = orchestrator.topics
    async with TopicReader(kafka_settings, t.dispatch("email"), t.contact_status) as reader:
        first = request_event("deb-h1", channel="email")
        second = request_event("deb-h2", channel="email")
        response = await orchestrator.submit(first, second)
        assert response.status_code == 202
        assert response.json()["request_ids"] == [first.id, second.id]
        assert [r["status"] for r in response.json()["results"]] == ["dispatched", "dispatched"]

        again = await orchestrator.submit(first)
        assert again.status_code == 202
        assert again.json()["results"][0] == {"request_id": first.id, "status": "dispatched", "reason": None,
                                              "duplicate": True}
        # the same id arriving on Kafka as well changes nothing either
        await orchestrator.publish(t.contact_requests, first)
        assert (await apply_request(orchestrator.runtime, first)).duplicate

        await reader.wait_count(DISPATCHED, 2)
        await wait_for(lambda: orchestrator.app.state.runtime_consumer.handled >= 1, what="kafka copy consumed")
        assert sorted(e.data.request_id for e in reader.of_type(DISPATCHED)) == sorted([first.id, second.id])

    single = await orchestrator.http.post("/v1/contact-requests", json=request_event("deb-h3").data.model_dump(
        mode="json"), headers={"Authorization": "Bearer editor-key"})
    assert single.status_code == 202 and single.json()["results"][0]["status"] == "dispatched"
    assert (await orchestrator.http.post("/v1/contact-requests", json={}, headers=VIEWER)).status_code == 403


async def test_invalid_requests_are_rejected_with_a_reason_and_poison_goes_to_the_dlq(
    orchestrator: Orchestrator, kafka_settings
) -> None:
    t = orchestrator.topics
    bad = [
        request_event("deb-v1", phone="+1212555"),
        request_event("deb-v2", channel="email", email="not-an-email"),
        request_event("deb-v3", jurisdiction="ZZ"),
        request_event("deb-v4", template="no_such_template"),
        request_event("deb-v5", currency="XYZ"),
        request_event("deb-v6", time_zone="Mars/Olympus"),
    ]
    async with TopicReader(kafka_settings, t.contact_status, t.dlq) as reader:
        for event in bad:
            await orchestrator.publish(t.contact_requests, event)
        producer = orchestrator.app.state.ctx.producer
        await producer.send_raw(t.contact_requests, b"{not json", b"deb-v7")
        await producer.send_raw(t.contact_requests, b'{"specversion": "1.0", "type": "cadencia.contact.requested.v1"}',
                                b"deb-v8")
        rejected = await reader.wait_count(STATUS, len(bad))
        [dead, dead2] = await reader.wait_count(DLQ, 2)
    reasons = {e.data.debtor_id: e.data.reason for e in rejected}
    assert all(e.data.status == "rejected" for e in rejected)
    assert "E.164" in reasons["deb-v1"]
    assert "e-mail" in reasons["deb-v2"]
    assert "jurisdiction" in reasons["deb-v3"]
    assert "template" in reasons["deb-v4"]
    assert "currency" in reasons["deb-v5"]
    assert "time zone" in reasons["deb-v6"]
    assert {dead.data.key, dead2.data.key} == {"deb-v7", "deb-v8"}
    assert all(d.data.source_topic == t.contact_requests for d in (dead, dead2))

    response = await orchestrator.submit(request_event("deb-v9", phone="12345"))
    assert response.status_code == 202 and response.json()["results"][0]["status"] == "rejected"
    malformed = await orchestrator.http.post("/v1/contact-requests", json={"requests": [{"debtor": {}}]},
                                             headers={"Authorization": "Bearer editor-key"})
    assert malformed.status_code == 422


async def test_a_request_its_template_cannot_render_is_rejected_with_the_reason(
    orchestrator: Orchestrator, kafka_settings, clock: FakeClock
) -> None:
    from services.orchestrator.templates import template_store
    from shared.events.contracts import TemplateContent

    ctx = orchestrator.app.state.ctx
    async with ctx.db.transaction() as session:
        draft = template_store.Draft(
            channel="sms", locale="es-MX", variant="A", variables_schema={}, content=TemplateContent(
            body="{{ creditor.name }}: vence el {{ account.due_date | date }}. Responde STOP para no recibir más."))
        row = await template_store.create_version(session, "due_notice", draft, clock())
        await template_store.publish(session, ctx.topics.templates, row, clock())
    t = orchestrator.topics
    async with TopicReader(kafka_settings, t.dispatch("sms"), t.contact_status) as reader:
        event = request_event("deb-nodue", channel="sms", template="due_notice", jurisdiction="MX",
                              time_zone="America/Mexico_City", phone="+525512340000")
        await orchestrator.publish(t.contact_requests, event)
        await wait_for(lambda: "rejected" in statuses(reader, event.id), what="rejected")
    [rejected] = [e for e in reader.of_type(STATUS) if e.data.request_id == event.id and e.data.status == "rejected"]
    assert "cannot render" in (rejected.data.reason or "") and "date" in (rejected.data.reason or "")
    assert "template.render" in rejected.data.rules
    assert not reader.of_type(DISPATCHED)  # nothing doomed was sent to the channel service


async def test_a_version_read_from_one_database_is_never_served_from_another(kafka_settings, tmp_path) -> None:
    """A process (a test run, a tool) can open several databases, each with its own ``due_notice`` v1: the
    version kept after one reads it belongs to that database, so the other renders its own v1."""
    from services.orchestrator.templates import template_store
    from shared.events.contracts import TemplateContent
    from tests.orchestrator.conftest import make_settings, running

    bodies = {"lenient": "{{ creditor.name }}: tienes un saldo pendiente. Responde STOP para no recibir más.",
              "strict": "{{ creditor.name }}: vence el {{ account.due_date | date }}. Responde STOP para no recibir."}
    outcomes = {}
    for name, body in bodies.items():
        clock = FakeClock()
        settings = make_settings(kafka_settings, f"sqlite+aiosqlite:///{tmp_path}/{name}.db")
        async with running(settings, clock, ()) as o:
            ctx = o.app.state.ctx
            async with ctx.db.transaction() as session:
                draft = template_store.Draft(channel="sms", locale="es-MX", variant="A", variables_schema={},
                                             content=TemplateContent(body=body))
                row = await template_store.create_version(session, "due_notice", draft, clock())
                await template_store.publish(session, ctx.topics.templates, row, clock())
            assert row.version == 1
            answer = (await o.submit(request_event(f"deb-{name}", template="due_notice"))).json()["results"][0]
            outcomes[name] = (answer["status"], answer.get("reason") or "")
    assert outcomes["lenient"][0] == "dispatched"
    assert outcomes["strict"][0] == "rejected" and "cannot render" in outcomes["strict"][1], outcomes


async def test_a_batch_checks_each_request_whose_values_its_template_cannot_render(
    orchestrator: Orchestrator, clock: FakeClock
) -> None:
    """Requests alike in every field's presence and type still differ where the template reads a value: an
    amount finer than the currency's minor units (``money`` refuses to round it), a payment link that is
    not http(s), a days-past-due that takes a branch showing a date the request lacks. In one batch,
    each after a request of the same shape that renders, each of those is rejected with the reason."""
    from services.orchestrator.templates import template_store
    from shared.events.contracts import TemplateContent

    ctx = orchestrator.app.state.ctx
    bodies = {"amount_notice": "{{ creditor.name }}: su saldo es {{ account.balance | money }}. Responda STOP.",
              "link_notice": "{{ creditor.name }}: pague en {{ account | payment_link }}. Responda STOP.",
              # The branch, taken by the value, shows a date the backend did not send.
              "late_notice": "{% if account.days_past_due > 60 %}Vencida desde {{ account.due_date | date }}. "
                             "{% endif %}{{ creditor.name }}: tiene un saldo pendiente. Responda STOP."}
    async with ctx.db.transaction() as session:
        for key, body in bodies.items():
            draft = template_store.Draft(channel="sms", locale="es-MX", variant="A", variables_schema={},
                                         content=TemplateContent(body=body))
            row = await template_store.create_version(session, key, draft, clock())
            await template_store.publish(session, ctx.topics.templates, row, clock())

    def request(n: int, template: str, **account: Any) -> Any:
        event = request_event(f"deb-shape-{n}", channel="sms", template=template, jurisdiction="MX", currency="MXN",
                              time_zone="America/Mexico_City", phone=f"+5255123400{n:02d}")
        return event.model_copy(update={"data": event.data.model_copy(update={
            "account": event.data.account.model_copy(update=account)})})

    batch = [request(1, "amount_notice", balance=Decimal("1234.50")),
             request(2, "amount_notice", balance=Decimal("1234.505")),
             request(3, "link_notice", payment_url="https://pay.example.com/x"),
             request(4, "link_notice", payment_url="ftp://pay.example.com/x"),
             request(5, "late_notice", days_past_due=30, due_date=None),
             request(6, "late_notice", days_past_due=90, due_date=None)]
    results = (await orchestrator.submit(*batch)).json()["results"]
    assert [r["status"] for r in results] == ["dispatched", "rejected"] * 3, results
    assert "cannot render" in results[1]["reason"] and "decimals" in results[1]["reason"]
    assert "cannot render" in results[3]["reason"] and "http(s)" in results[3]["reason"]
    assert "cannot render" in results[5]["reason"] and "date" in results[5]["reason"]
