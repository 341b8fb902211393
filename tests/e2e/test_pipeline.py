"""The whole path through real services: orchestrator → Kafka → SMS service → Twilio sandbox → back.

Only the provider is simulated (by the sandbox, speaking Twilio's API to the real client code).
The orchestrator's clock is set to the next lawful noon in Mexico City so the policy allows the
contact whatever time the suite runs; every other part runs on real time.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

import services.sms.app
import services.sms.settings
from services.orchestrator.app import create_app
from services.orchestrator.settings import Settings
from services.sandbox.testing import running_sandbox
from shared.config import DatabaseSettings, KafkaSettings
from shared.events import Topics
from shared.events.contracts import Account, ContactRequested, ContactRequestedEvent, Debtor
from tests.channel_harness import free_socket, running_service, service_settings
from tests.helpers import TopicReader, fresh, wait_for

EDITOR = {"Authorization": "Bearer dev-admin-key"}
MEXICO = ZoneInfo("America/Mexico_City")


def next_lawful_noon() -> datetime:
    now = datetime.now(MEXICO)
    noon = now.replace(hour=12, minute=0, second=0, microsecond=0)
    return (noon if noon > now else noon + timedelta(days=1)).astimezone(UTC)


def request(
    debtor_id: str, phone: str, channel: str = "sms", template: str = "reminder_early"
) -> ContactRequestedEvent:
    return ContactRequestedEvent(subject=debtor_id, source="tests", data=ContactRequested(
        debtor=Debtor(id=debtor_id, name="Lupita Hernández", locale="es-MX", jurisdiction="MX",
                      time_zone="America/Mexico_City", phone=phone, email=f"{debtor_id}@example.com"),
        account=Account(id=f"acc-{debtor_id}", product="personal_loan", balance="1234.50", currency="MXN",
                        days_past_due=12, due_date=date(2026, 11, 10), payment_url="https://pay.example.com/x"),
        channel=channel, template=template,  # type: ignore[arg-type]
    ))


async def _twilio(sandbox: Any, to: str, count: int) -> list[dict[str, Any]] | None:
    sent = await sandbox.requests(provider="twilio", to=to)
    assert len(sent) <= count, sent
    return sent if len(sent) == count else None


def phone(suffix: str) -> str:
    return f"+5255{fresh(10_000):04d}{suffix}"


@pytest.mark.e2e
async def test_request_to_delivery_reply_suppression_and_fallback(kafka_settings: KafkaSettings, tmp_path) -> None:
    noon = next_lawful_noon()
    orchestrator_settings = Settings(
        kafka=kafka_settings, database=DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path}/orchestrator.db"),
        consumer_group=f"{kafka_settings.topic_prefix}orchestrator", scheduler_interval=0.1,
    )
    topics = Topics(kafka_settings.topic_prefix)
    orchestrator = create_app(orchestrator_settings, clock=lambda: noon)
    async with running_sandbox() as sandbox, orchestrator.router.lifespan_context(orchestrator):
        sock = free_socket()
        port = sock.getsockname()[1]
        sock.close()
        sms_settings = service_settings(services.sms.settings, kafka_settings, f"sqlite+aiosqlite:///{tmp_path}/sms.db",
                                        sandbox, port, group=f"{kafka_settings.topic_prefix}sms")
        await sandbox.set_inbound_urls(sms=f"http://127.0.0.1:{port}/webhooks/twilio/inbound")
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=orchestrator), base_url="http://orchestrator")
        async with running_service(services.sms.app, sms_settings), TopicReader(
            kafka_settings, topics.dispatch("email")
        ) as email_dispatches:
            replier, unreachable = phone("7002"), phone("3003")  # delivered then "BAJA"; undelivered 30003
            first = request("deb-baja", replier)
            # "auto": the early segment's order (SMS, WhatsApp, email) and its suffixed template, reminder_early.
            second = request("deb-gone", unreachable, channel="auto", template="reminder")
            response = await http.post("/v1/contact-requests", headers=EDITOR, json={
                "requests": [first.model_dump(mode="json"), second.model_dump(mode="json")]})
            assert response.status_code == 202, response.text

            async def debtor(debtor_id: str) -> dict[str, Any]:
                return (await http.get(f"/v1/debtors/{debtor_id}", headers=EDITOR)).json()

            # 1. Rendered, sent once through Twilio's API, delivered, and the debtor's BAJA suppresses SMS.
            async def suppressed() -> bool:
                return any(s["channel"] == "sms" and s["lifted_at"] is None
                           for s in (await debtor("deb-baja")).get("suppressions", []))

            await wait_for(suppressed, timeout=30, what="BAJA suppresses SMS")
            # The reminder, then the one confirmation of the opt-out the law allows.
            sent = await wait_for(lambda: _twilio(sandbox, replier, 2), what="reminder and confirmation")
            reminder, confirmation = (r["form"]["Body"] for r in sent)
            assert "Lupita" in reminder and "$1,234.50" in reminder and "https://pay.example.com/x" in reminder
            assert "no recibiras mas mensajes" in confirmation  # the shipped SMS is GSM-7
            state = await debtor("deb-baja")
            assert {o["status"] for o in state["outcomes"]} >= {"delivered"}
            assert any(r["kind"] == "opt_out" for r in state["responses"])

            status = (await http.get(f"/v1/contact-requests/{first.id}", headers=EDITOR)).json()
            assert "delivered" in [h["status"] for h in status["history"]]

            # 2. An undelivered SMS falls back to email, as a second attempt of the same request.
            await wait_for(lambda: [e for e in email_dispatches.events if e.data.request_id == second.id],
                           timeout=30, what="fallback dispatch to email")
            fallback = [e for e in email_dispatches.events if e.data.request_id == second.id]
            assert len(fallback) == 1 and fallback[0].data.attempt == 2
            assert fallback[0].data.to == "deb-gone@example.com"

            # 3. Once opted out, a new SMS for that debtor is never sent.
            again = request("deb-baja", replier)
            await http.post("/v1/contact-requests", headers=EDITOR, json={"requests": [again.model_dump(mode="json")]})

            async def decided() -> str | None:
                r = (await http.get(f"/v1/contact-requests/{again.id}", headers=EDITOR)).json()
                return r.get("status") if r.get("status") not in (None, "accepted") else None

            assert await wait_for(decided, timeout=15, what="second request decided") in ("rejected", "dispatched")
            assert len(await sandbox.requests(provider="twilio", to=replier)) == 2
        await http.aclose()
