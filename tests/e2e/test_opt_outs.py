"""Every way a debtor says stop is honoured at once, end to end through the sandbox.

Texts in Spanish or English, any case, accents or punctuation, or in a short sentence; Twilio's own
keywords; a keypress 9 during a call (confirmed in that call, never by a new one); an e-mail's
one-click unsubscribe. An unclear reply is recorded as a reply and changes nothing.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from shared.config import KafkaSettings
from shared.events.contracts import Account, ContactRequested, ContactRequestedEvent, Debtor, StatusChangedEvent
from tests.e2e.harness import EDITOR, System, requests_to, system
from tests.helpers import fresh, wait_for

MEXICO = ZoneInfo("America/Mexico_City")
PHRASES = ["ya no me escriban", "No más mensajes!", "stop please", "Bájá", "BAJA por favor", "STOP", "quit",
           "Dejen de escribirme, gracias"]


def next_noon() -> datetime:
    now = datetime.now(MEXICO)
    noon = now.replace(hour=12, minute=0, second=0, microsecond=0)
    return (noon if noon > now else noon + timedelta(days=1)).astimezone(UTC)


def number() -> str:
    return f"+5255{fresh(10**8):08d}"


def contact(debtor_id: str, channel: str, *, phone: str | None = None, email: str | None = None,
            account_id: str | None = None) -> ContactRequestedEvent:
    return ContactRequestedEvent(subject=debtor_id, source="tests", data=ContactRequested(
        debtor=Debtor(id=debtor_id, name="Lupita Hernández", locale="es-MX", jurisdiction="MX",
                      time_zone="America/Mexico_City", phone=phone, email=email),
        account=Account(id=account_id or f"acc-{debtor_id}", product="personal_loan", balance="1234.50",
                        currency="MXN", days_past_due=12, due_date=date(2026, 11, 10),
                        payment_url="https://pay.example.com/x"),
        channel=channel, template="reminder_early",  # type: ignore[arg-type]
    ))


async def debtor_state(s: System, debtor_id: str) -> dict[str, Any]:
    return (await s.http.get(f"/v1/debtors/{debtor_id}", headers=EDITOR)).json()


async def suppressed(s: System, debtor_id: str, channel: str) -> bool:
    return any(x["channel"] == channel and x["reason"] == "opt_out" and x["lifted_at"] is None
               for x in (await debtor_state(s, debtor_id)).get("suppressions", []))


async def decided(s: System, request_id: str) -> StatusChangedEvent:
    def last() -> StatusChangedEvent | None:
        found = [e for e in s.statuses_of(request_id) if e.data.status in ("dispatched", "rejected", "deferred")]
        return found[-1] if found else None

    return await wait_for(last, timeout=20, what=f"request {request_id} decided")


@pytest.mark.e2e
async def test_each_phrase_opts_out_of_sms_and_an_unclear_reply_is_kept_as_a_reply(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    async with system(kafka_settings, tmp_path, next_noon()) as s:
        people = {text: (f"deb-{i}-{uuid.uuid4().hex[:6]}", number()) for i, text in enumerate(PHRASES)}
        unclear_id, unclear_phone = f"deb-q-{uuid.uuid4().hex[:6]}", number()
        for text, (_, phone) in people.items():
            await s.sandbox.set_scenario(phone, outcome="delivered", reply=text)
        await s.sandbox.set_scenario(unclear_phone, outcome="delivered", reply="¿Cuánto debo exactamente?")
        await s.submit(*(contact(d, "sms", phone=p) for d, p in people.values()),
                       contact(unclear_id, "sms", phone=unclear_phone))

        for text, (debtor_id, _) in people.items():
            await wait_for(lambda d=debtor_id: suppressed(s, d, "sms"), timeout=45, what=f"{text!r} opts out")

        async def replied() -> bool:
            return any(r["kind"] == "reply" for r in (await debtor_state(s, unclear_id))["responses"])

        await wait_for(replied, timeout=30, what="unclear reply recorded")
        assert not await suppressed(s, unclear_id, "sms")

        # Afterwards SMS is refused to every opted-out number; the unclear replier is still reachable.
        again = {d: contact(d, "sms", phone=p) for d, p in [*people.values(), (unclear_id, unclear_phone)]}
        await s.submit(*again.values())
        for debtor_id, request in again.items():
            status = (await decided(s, request.id)).data
            if debtor_id == unclear_id:  # reachable: sent, or only waiting for the strategy's gap
                assert status.status in ("dispatched", "deferred"), status
            else:
                assert status.status == "rejected" and "suppressed (opt_out)" in (status.reason or ""), status


@pytest.mark.e2e
async def test_keypress_9_suppresses_voice_and_is_confirmed_in_the_call_never_by_a_new_one(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    async with system(kafka_settings, tmp_path, next_noon(), also=("voice",)) as s:
        debtor_id, phone = f"deb-v-{uuid.uuid4().hex[:6]}", number()
        await s.sandbox.set_scenario(phone, answer="human", digits=["9"])
        first = contact(debtor_id, "voice", phone=phone)
        await s.submit(first)
        await wait_for(lambda: suppressed(s, debtor_id, "voice"), timeout=45, what="keypress 9 suppresses voice")

        # A later collection call is refused; still SMS is not what the debtor refused.
        later = contact(debtor_id, "voice", phone=phone)
        await s.submit(later)
        assert (await decided(s, later.id)).data.status == "rejected"
        calls = [r for r in await s.sandbox.requests(provider="twilio", to=phone) if r["path"].endswith("/Calls.json")]
        assert len(calls) == 1, "the opt-out was confirmed by a new call"
        assert not [e for e in s.dispatches.events if e.data.kind == "opt_out_confirmation"]
        spoken = (await s.sandbox.call(calls[0]["sid"]))["spoken"]
        assert "No volveremos a llamarle a este número." in spoken
        assert not await suppressed(s, debtor_id, "sms")


@pytest.mark.e2e
async def test_one_click_unsubscribe_suppresses_email_at_once_without_a_confirmation_mail(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    async with system(kafka_settings, tmp_path, next_noon(), also=("email",)) as s:
        debtor_id = f"deb-e-{uuid.uuid4().hex[:6]}"
        mailbox = f"lupita+{uuid.uuid4().hex[:8]}@Example.COM"
        canonical = mailbox.rsplit("@", 1)[0] + "@example.com"
        await s.submit(contact(debtor_id, "email", email=mailbox))

        async def mails() -> list[dict[str, Any]]:
            return [r for r in await s.sandbox.requests(provider="sendgrid", to=canonical)
                    if r["path"].endswith("/mail/send")]

        (mail,) = await wait_for(mails, timeout=30, what="reminder mailed")
        link = mail["json"]["headers"]["List-Unsubscribe"].split(", ")[0].strip("<>")
        async with httpx.AsyncClient(timeout=10) as client:
            assert (await client.post(link, data={"List-Unsubscribe": "One-Click"})).status_code == 200
        await wait_for(lambda: suppressed(s, debtor_id, "email"), timeout=30, what="unsubscribe suppresses email")
        later = contact(debtor_id, "email", email=mailbox)
        await s.submit(later)
        assert (await decided(s, later.id)).data.status == "rejected"
        assert len(await mails()) == 1


@pytest.mark.e2e
async def test_a_written_cease_stops_every_channel_but_the_cease_notice(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    from shared.bus import EventProducer
    from shared.events import Topics
    from shared.events.contracts import CommunicationCeased, CommunicationCeasedEvent

    async with system(kafka_settings, tmp_path, next_noon()) as s:
        debtor_id, phone = f"deb-c-{uuid.uuid4().hex[:6]}", number()
        account = f"acc-{debtor_id}"
        first = contact(debtor_id, "sms", phone=phone, email=f"{debtor_id}@example.com")
        await s.submit(first)
        assert (await decided(s, first.id)).data.status == "dispatched"
        producer = EventProducer(kafka_settings, client_id="test-cease")
        await producer.start()
        try:
            await producer.publish(Topics(kafka_settings.topic_prefix).account_events, CommunicationCeasedEvent(
                subject=debtor_id, data=CommunicationCeased(debtor_id=debtor_id, account_id=account)))
        finally:
            await producer.stop()

        async def ceased() -> bool:
            accounts = (await debtor_state(s, debtor_id))["accounts"]
            return any(a["id"] == account and a["status"] == "ceased" for a in accounts)

        await wait_for(ceased, timeout=30, what="account ceased")
        attempts = [contact(debtor_id, c, phone=phone, email=f"{debtor_id}@example.com") for c in ("sms", "email",
                                                                                                  "voice", "auto")]
        await s.submit(*attempts)
        for a in attempts:
            assert (await decided(s, a.id)).data.status == "rejected", a.data.channel
        assert len(await requests_to(s.sandbox, phone)) == 1
