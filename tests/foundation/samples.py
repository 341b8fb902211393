"""One valid instance of every event type, for round-trip and schema tests."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

from shared.events import CloudEvent
from shared.events import contracts as c

AT = datetime(2026, 3, 2, 15, 30, tzinfo=UTC)


def sample_events() -> list[CloudEvent]:
    debtor = c.Debtor(
        id="deb-1", name="María José Pérez", locale="es-MX", jurisdiction="MX",
        time_zone="America/Mexico_City", phone="+525512345678", email="maria@example.mx",
        whatsapp="+525512345678", authorized_channels=["sms", "whatsapp"], preferred_channel="whatsapp",
    )
    account = c.Account(
        id="acc-1", product="personal_loan", balance=Decimal("1234.50"), currency="MXN",
        days_past_due=12, due_date=date(2026, 2, 18), risk_score=0.4, payment_url="https://pay.example/acc-1",
    )
    ids = {"debtor_id": "deb-1", "account_id": "acc-1"}
    ref = c.TemplateRef(key="reminder_early", version=3, channel="sms", locale="es-MX", variant="A")
    return [
        c.ContactRequestedEvent(subject="deb-1", data=c.ContactRequested(
            debtor=debtor, account=account, channel="auto", template="reminder_early",
            variables={"campaign": "feb"}, campaign_id="feb-2026", priority=3, not_before=AT, expires_at=AT,
        )),
        c.PaymentReceivedEvent(
            subject="deb-1", data=c.PaymentReceived(**ids, amount=Decimal("10.00"), currency="MXN")
        ),
        c.PromiseMadeEvent(
            subject="deb-1", data=c.PromiseMade(**ids, amount=Decimal("500"), due_date=date(2026, 3, 9))
        ),
        c.PromiseBrokenEvent(subject="deb-1", data=c.PromiseBroken(**ids)),
        c.DisputeOpenedEvent(subject="deb-1", data=c.DisputeOpened(**ids, reason="not mine")),
        c.DisputeResolvedEvent(subject="deb-1", data=c.DisputeResolved(**ids)),
        c.CommunicationCeasedEvent(subject="deb-1", data=c.CommunicationCeased(**ids, scope="sms")),
        c.DebtorUpdatedEvent(subject="deb-1", data=c.DebtorUpdated(**ids, email="new@example.mx")),
        c.ContactDispatchedEvent(subject="deb-1", data=c.ContactDispatched(
            dispatch_id="dsp-1", request_id="req-1", debtor_id="deb-1", account_id="acc-1", channel="sms",
            to="+525512345678", template=ref, variables={"x": 1}, attempt=1, deadline=AT,
        )),
        c.DeliveryUpdatedEvent(subject="deb-1", data=c.DeliveryUpdated(
            dispatch_id="dsp-1", request_id="req-1", debtor_id="deb-1", channel="sms", status="delivered",
            provider="twilio", provider_id="SM" + "0" * 32, occurred_at=AT,
        )),
        c.ResponseReceivedEvent(subject="deb-1", data=c.ResponseReceived(
            debtor_id="deb-1", dispatch_id="dsp-1", channel="sms", kind="opt_out", text="BAJA",
            address="+525512345678", occurred_at=AT,
        )),
        c.CallRecordedEvent(subject="deb-1", data=c.CallRecorded(
            dispatch_id="dsp-1", request_id="req-1", debtor_id="deb-1", provider="twilio", call_sid="CA" + "0" * 32,
            recording_sid="RE" + "0" * 32, duration_s=42,
            url="https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1", occurred_at=AT,
        )),
        c.StatusChangedEvent(subject="deb-1", data=c.StatusChanged(
            request_id="req-1", debtor_id="deb-1", status="deferred", reason="quiet hours", not_before=AT,
            channel="sms", rules=["MX.hours"],
        )),
        c.TemplatePublishedEvent(subject="reminder_early:sms:es-MX:A", data=c.TemplatePublished(
            key="reminder_early", version=3, channel="sms", locale="es-MX", variant="A",
            content=c.TemplateContent(body="Hola {{ debtor.first_name }}"), published_at=AT,
        )),
        c.DeadLetteredEvent(subject="deb-1", data=c.DeadLettered(
            source_topic="cadencia.contact.requests", partition=0, offset=7, key="deb-1", value_b64="e30=",
            error="invalid event", service="orchestrator", failed_at=AT,
        )),
    ]
