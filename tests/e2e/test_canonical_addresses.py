"""One number, however it was written: sent to E.164, and one BAJA silences it for every debtor using it."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from shared.config import KafkaSettings
from shared.events.contracts import Account, ContactRequested, ContactRequestedEvent, Debtor, StatusChangedEvent
from tests.e2e.harness import EDITOR, System, requests_to, system
from tests.helpers import fresh, wait_for

MEXICO = ZoneInfo("America/Mexico_City")


def next_noon() -> datetime:
    now = datetime.now(MEXICO)
    noon = now.replace(hour=12, minute=0, second=0, microsecond=0)
    return (noon if noon > now else noon + timedelta(days=1)).astimezone(UTC)


def sms_request(debtor_id: str, phone: str) -> ContactRequestedEvent:
    return ContactRequestedEvent(subject=debtor_id, source="tests", data=ContactRequested(
        debtor=Debtor(id=debtor_id, name="Lupita Hernández", locale="es-MX", jurisdiction="MX",
                      time_zone="America/Mexico_City", phone=phone),
        account=Account(id=f"acc-{debtor_id}", product="personal_loan", balance="1234.50", currency="MXN",
                        days_past_due=12, due_date=date(2026, 11, 10), payment_url="https://pay.example.com/x"),
        channel="sms", template="reminder_early",
    ))


async def final_status(s: System, request_id: str) -> StatusChangedEvent | None:
    found = [e for e in s.statuses_of(request_id) if e.data.status in ("dispatched", "rejected", "deferred")]
    return found[-1] if found else None


@pytest.mark.e2e
async def test_two_spellings_one_number_one_baja_for_every_debtor(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    # A fresh Mexico City mobile number, written two ways by two debtors' backends.
    local = f"55 {fresh(9000) + 1000:04d} {fresh(10_000):04d}"
    e164 = "+52" + local.replace(" ", "")
    punctuated = f"+52 ({local[:2]}) {local[3:7]}-{local[8:]}"
    tag = uuid.uuid4().hex[:6]
    national, written = sms_request(f"deb-nat-{tag}", local), sms_request(f"deb-pun-{tag}", punctuated)
    async with system(kafka_settings, tmp_path, next_noon()) as s:
        await s.submit(national, written)
        # both reminders go to the one E.164 number, as Twilio expects it
        sent = await wait_for(lambda: _messages(s, e164, 2), timeout=30, what="both reminders sent")
        assert [r["form"]["To"] for r in sent] == [e164, e164]
        assert all(r["status"] == 201 for r in sent)
        state = (await s.http.get(f"/v1/debtors/{national.data.debtor.id}", headers=EDITOR)).json()
        assert [d["address"] for d in state["ledger"]] == [e164]  # the ledger keeps the canonical form

        # BAJA from the number, as Twilio writes it.
        await s.sandbox.inbound(from_=e164, to="+15005550006", body="BAJA")

        async def opted_out() -> bool:
            for d in (national, written):
                rows = (await s.http.get(f"/v1/debtors/{d.data.debtor.id}", headers=EDITOR)).json()
                if any(x["channel"] == "sms" and x["address"] == e164 and x["lifted_at"] is None
                       for x in rows.get("suppressions", [])):
                    return True
            return False

        await wait_for(opted_out, timeout=30, what="BAJA recorded as an SMS suppression")
        before = len(await requests_to(s.sandbox, e164))

        # Every debtor using the number, in any spelling, is refused SMS from now on.
        again = [sms_request(national.data.debtor.id, local), sms_request(written.data.debtor.id, punctuated),
                 sms_request(f"deb-new-{tag}", f"+52.{local[:2]}.{local[3:7]}.{local[8:]}")]
        await s.submit(*again)
        for r in again:
            decided = await wait_for(lambda r=r: final_status(s, r.id), timeout=20, what="decided")
            assert decided.data.status == "rejected", decided.data
            assert "suppressed (opt_out)" in (decided.data.reason or "")
        # the only message after the BAJA is its one confirmation, to the debtor who sent it
        after = await requests_to(s.sandbox, e164)
        assert len(after) - before <= 1
        assert all("no recibiras mas" in r["form"]["Body"] for r in after[2:])  # the SMS seed is GSM-7


async def _messages(s: System, to: str, count: int) -> list | None:
    found = await requests_to(s.sandbox, to)
    assert len(found) <= count + 1, found
    return found[:count] if len(found) >= count else None
