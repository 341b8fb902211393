"""No provider request leaves after the end of the lawful window (``send_before``), end to end.

The orchestrator, the SMS service and the sandbox read one clock: real time, started at the
instant a test names (a Friday evening in Bogotá or Santiago), so the policy, the dispatch pipeline
and the provider's own request records all live in the same minute. Only the provider is simulated.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from services.orchestrator.runtime.operations import load_ledger
from shared.config import KafkaSettings
from shared.events.contracts import Account, ContactRequested, ContactRequestedEvent, Debtor, StatusChangedEvent
from tests.e2e.harness import EDITOR, requests_to, system
from tests.helpers import fresh, wait_for

BOGOTA, SANTIAGO = ZoneInfo("America/Bogota"), ZoneInfo("America/Santiago")


def request(jurisdiction: str, zone: str, phone: str, locale: str) -> ContactRequestedEvent:
    debtor_id = f"deb-{uuid.uuid4().hex[:8]}"
    return ContactRequestedEvent(subject=debtor_id, source="tests", data=ContactRequested(
        debtor=Debtor(id=debtor_id, name="Camila Rojas", locale=locale, jurisdiction=jurisdiction,
                      time_zone=zone, phone=phone),
        account=Account(id=f"acc-{debtor_id}", product="personal_loan", balance="150000", currency="COP",
                        days_past_due=12, due_date=date(2026, 11, 10), payment_url="https://pay.example.com/x"),
        channel="sms", template="reminder_early",
    ))


def unique_phone(prefix: str) -> str:
    return f"{prefix}{fresh(10_000):04d}"


@pytest.mark.e2e
async def test_a_429_with_retry_after_past_the_window_sends_nothing_and_defers_to_saturday(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    friday = datetime(2026, 11, 27, 18, 59, 30, tzinfo=BOGOTA)
    async with system(kafka_settings, tmp_path, friday) as s:
        await s.sandbox.set_faults(provider="twilio", rate_limit_next=1, retry_after_s=60)
        contact = request("CO", "America/Bogota", unique_phone("+57300123"), "es-CO")
        s.clock.set(friday)  # approved at 18:59:30 in Bogotá
        await s.submit(contact)

        async def redeferred() -> StatusChangedEvent | None:
            later = [e for e in s.statuses_of(contact.id) if e.data.status == "deferred"]
            return later[-1] if later else None

        deferred = await wait_for(redeferred, timeout=30, what="re-deferred after expiring")
        assert deferred.data.not_before == datetime(2026, 11, 28, 8, 0, tzinfo=BOGOTA)
        assert "core.send_before" in deferred.data.rules

        (dispatch,) = s.dispatched(contact.id)
        assert dispatch.data.send_before == datetime(2026, 11, 27, 18, 59, 50, tzinfo=BOGOTA)
        await wait_for(lambda: "expired" in s.outcomes_of(dispatch.data.dispatch_id), timeout=15, what="expired")
        assert s.outcomes_of(dispatch.data.dispatch_id) == ["expired"]  # never accepted, never retried

        # The provider's own records: the one refused attempt, before send_before; no message exists.
        sent = await requests_to(s.sandbox, contact.data.debtor.phone or "")
        assert [r["status"] for r in sent] == [429]
        assert all(r["received_ts"] < dispatch.data.send_before.timestamp() for r in sent)

        # Counted nowhere: the ledger the policy reads has no trace of the expired dispatch.
        db = s.orchestrator.state.runtime.ctx.db
        async with db.transaction() as session:
            assert await load_ledger(session, contact.data.debtor.id, friday - timedelta(days=30)) == []
        history = (await s.http.get(f"/v1/contact-requests/{contact.id}", headers=EDITOR)).json()
        assert history["status"] == "deferred"


@pytest.mark.e2e
async def test_behind_a_slow_provider_nothing_leaves_after_20_in_chile(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    # One request in flight at a time, each answered after 6 s: the second message waits past the
    # window's end (19:59:50 with the margin) and must not go.
    start = datetime(2026, 11, 27, 19, 59, 44, tzinfo=SANTIAGO)
    async with system(kafka_settings, tmp_path, start, max_in_flight=1, request_timeout_s=10.0) as s:
        await s.sandbox.set_faults(provider="twilio", latency={"kind": "fixed", "ms": 6000})
        contacts = [request("CL", "America/Santiago", unique_phone("+5698765"), "es-CO") for _ in range(2)]
        s.clock.set(start)
        await s.submit(*contacts)

        def ends() -> dict[str, str] | None:
            found = {}
            for c in contacts:
                for d in s.dispatched(c.id):
                    # sent: "accepted", or a later status that superseded it; else "expired"
                    final = [o for o in s.outcomes_of(d.data.dispatch_id)
                             if o in ("accepted", "sent", "delivered", "expired")]
                    if final:
                        found[c.id] = final[0]
            return found if len(found) == len(contacts) else None

        outcome = await wait_for(ends, timeout=60, what="every dispatch sent or expired")
        assert "expired" in outcome.values()
        for c in contacts:
            (d,) = s.dispatched(c.id)
            assert d.data.send_before == datetime(2026, 11, 27, 19, 59, 50, tzinfo=SANTIAGO)
            for r in await requests_to(s.sandbox, c.data.debtor.phone or ""):
                assert r["received_ts"] < d.data.send_before.timestamp(), "a request left after send_before"
            if outcome[c.id] == "expired":
                assert not await requests_to(s.sandbox, c.data.debtor.phone or "")

                async def saturday(request_id: str = c.id) -> bool:
                    return any(e.data.status == "deferred"
                               and e.data.not_before == datetime(2026, 11, 28, 8, 0, tzinfo=SANTIAGO)
                               for e in s.statuses_of(request_id))

                await wait_for(saturday, timeout=15, what="expired message deferred to Saturday 08:00")
