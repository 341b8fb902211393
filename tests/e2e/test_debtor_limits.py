"""A debtor's own limits, end to end: times stated in a reply or recorded by ops defer contacts, and an
attorney's representation stops direct collection contact."""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from shared.bus import EventProducer
from shared.config import KafkaSettings
from shared.events import Topics
from shared.events.contracts import Attorney, DebtorUpdated, DebtorUpdatedEvent
from tests.e2e.harness import EDITOR, System, system
from tests.e2e.test_opt_outs import contact, debtor_state, decided, number
from tests.helpers import wait_for

MEXICO = ZoneInfo("America/Mexico_City")
NINE = datetime(2026, 11, 25, 9, 0, tzinfo=MEXICO)  # a Wednesday


async def limits_of(s: System, debtor_id: str) -> list[dict]:
    return (await debtor_state(s, debtor_id))["debtor"]["inconvenient_times"] or []


@pytest.mark.e2e
async def test_a_reply_saying_not_before_2_pm_defers_the_next_text_to_2_pm(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    async with system(kafka_settings, tmp_path, NINE) as s:
        debtor_id, phone = f"deb-l-{uuid.uuid4().hex[:6]}", number()
        await s.sandbox.set_scenario(phone, outcome="delivered", reply="No me escriban antes de las 2 pm, por favor")
        first = contact(debtor_id, "sms", phone=phone)
        await s.submit(first)
        stated = await wait_for(lambda: limits_of(s, debtor_id), timeout=30, what="limit recorded from the reply")
        assert [(x["start"], x["end"], x["source"]) for x in stated] == [("00:00", "14:00", "reply")]
        assert not (await debtor_state(s, debtor_id))["suppressions"]  # a limit, not an opt-out

        later = contact(debtor_id, "sms", phone=phone)
        await s.submit(later)
        status = (await decided(s, later.id)).data
        assert status.status == "deferred" and "debtor.inconvenient_times" in status.rules
        # the strategy's 4-hour gap would allow 13:00; the debtor's own limit binds later
        assert status.not_before == datetime(2026, 11, 25, 14, 0, tzinfo=MEXICO)


@pytest.mark.e2e
async def test_ops_record_inconvenient_times_and_an_attorney_stops_collection(
    kafka_settings: KafkaSettings, tmp_path: Path
) -> None:
    async with system(kafka_settings, tmp_path, NINE) as s:
        debtor_id, phone = f"deb-o-{uuid.uuid4().hex[:6]}", number()
        first = contact(debtor_id, "sms", phone=phone)
        await s.submit(first)
        assert (await decided(s, first.id)).data.status == "dispatched"

        missing = await s.http.put("/v1/debtors/nobody/preferences", headers=EDITOR, json={})
        assert missing.status_code == 404
        bad = await s.http.put(f"/v1/debtors/{debtor_id}/preferences", headers=EDITOR,
                               json={"inconvenient_times": [{"start": "9am"}]})
        assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
        viewer = await s.http.put(f"/v1/debtors/{debtor_id}/preferences", json={})
        assert viewer.status_code == 401
        put = await s.http.put(f"/v1/debtors/{debtor_id}/preferences", headers=EDITOR, json={
            "inconvenient_times": [{"start": "00:00", "end": "14:30", "channels": ["sms"]}, {"days": ["sat", "sun"]}]})
        assert put.status_code == 200
        assert {x["source"] for x in put.json()["inconvenient_times"]} == {"ops"}

        later = contact(debtor_id, "sms", phone=phone)
        await s.submit(later)
        status = (await decided(s, later.id)).data
        assert status.status == "deferred" and "debtor.inconvenient_times" in status.rules
        assert status.not_before == datetime(2026, 11, 25, 14, 30, tzinfo=MEXICO)

        # The debt's attorney: no more direct collection contact.
        producer = EventProducer(kafka_settings, client_id="test-attorney")
        await producer.start()
        try:
            await producer.publish(Topics(kafka_settings.topic_prefix).account_events, DebtorUpdatedEvent(
                subject=debtor_id, data=DebtorUpdated(
                    debtor_id=debtor_id, account_id=first.data.account.id, represented_by_attorney=True,
                    attorney=Attorney(name="Lic. Ana Ruiz", email="ana.ruiz@despacho.example"))))
        finally:
            await producer.stop()

        async def represented() -> bool:
            return any(a["represented_by_attorney"] for a in (await debtor_state(s, debtor_id))["accounts"])

        await wait_for(represented, timeout=30, what="attorney recorded")
        s.clock.set(datetime(2026, 11, 25, 15, 0, tzinfo=MEXICO))
        blocked = contact(debtor_id, "sms", phone=phone)
        await s.submit(blocked)
        status = (await decided(s, blocked.id)).data
        assert status.status == "rejected" and "debtor.attorney" in status.rules
