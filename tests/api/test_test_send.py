"""Test send: a version to an editor's own phone through the real SMS service and the sandbox's Twilio."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from structlog.testing import capture_logs

from services.sandbox.testing import running_sandbox
from shared.config import KafkaSettings
from tests.channel_harness import (
    free_port,
    running_service,
    sandbox_messages,
    service_settings,
    template_cached,
)
from tests.helpers import TopicReader, fresh, wait_for
from tests.messaging.test_sms import SMS
from tests.orchestrator.conftest import FakeClock, make_settings, request_event, running

EDITOR = {"Authorization": "Bearer editor-key"}
ADMIN = {"Authorization": "Bearer admin-key"}
VIEWER = {"Authorization": "Bearer viewer-key"}
DELIVERY = "cadencia.contact.delivery_updated.v1"


def unique_number(suffix: str) -> str:
    """A valid US number (the sandbox delivers to these last four digits); unique per test run."""

    return f"+1212{fresh(300) + 200:03d}{suffix}"


async def test_a_test_send_goes_through_the_sms_service_is_logged_limited_and_never_to_a_debtor(
    kafka_settings: KafkaSettings, database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(kafka_settings, database_url, test_sends_per_hour=2)
    # The channel service checks the dispatch deadline against the real clock.
    async with running_sandbox() as sandbox, running(settings, FakeClock(datetime.now(UTC))) as o, \
            TopicReader(kafka_settings, o.topics.contact_outcomes) as outcomes:
        sms = service_settings(SMS, kafka_settings, f"sqlite+aiosqlite:///{tmp_path}/sms.db", sandbox, free_port(),
                               group=f"{kafka_settings.topic_prefix}sms")
        async with running_service(SMS, sms) as service:
            await template_cached(service, "reminder")  # v1: the SMS in es-MX
            phone = unique_number("0001")
            with capture_logs() as logs:
                answer = await o.http.post("/v1/templates/reminder/versions/1/test-send", headers=EDITOR,
                                           json={"to": phone, "sample": {"creditor": {"name": "Banco Prueba"}}})
            assert answer.status_code == 202, answer.text
            sent = answer.json()
            assert sent["dispatch_id"].startswith("test-send-") and sent["requested_by"] == "editor"
            assert sent["rendered"]["body"].startswith("Banco Prueba: tienes un saldo pendiente")
            assert sent["remaining_this_hour"] == 1
            assert any(e["event"] == "template test send" and e["requested_by"] == "editor" for e in logs)

            # The provider received exactly what the preview rendered, and the delivery came back.
            messages = await wait_for(lambda: sandbox_messages(sandbox, phone), what="sandbox got the SMS")
            assert len(messages) == 1 and messages[0]["form"]["Body"] == sent["rendered"]["body"]
            await wait_for(lambda: [e for e in outcomes.of_type(DELIVERY)
                                    if e.data.dispatch_id == sent["dispatch_id"] and e.data.status == "delivered"],
                           what="delivered")

        # Never a debtor's address: a number the ledger knows is refused.
        debtor = request_event("deb-ts", channel="sms", phone="+12125550199")
        assert (await o.submit(debtor)).json()["results"][0]["status"] in ("dispatched", "deferred")
        refused = await o.http.post("/v1/templates/reminder/versions/1/test-send", headers=EDITOR,
                                    json={"to": "+12125550199"})
        assert refused.status_code == 403 and refused.json()["type"] == "/problems/test-send-debtor-address"
        bad = await o.http.post("/v1/templates/reminder/versions/1/test-send", headers=EDITOR, json={"to": "12"})
        assert bad.status_code == 422
        assert (await o.http.post("/v1/templates/reminder/versions/1/test-send", headers=VIEWER,
                                  json={"to": unique_number("0002")})).status_code == 403

        # Rate-limited per key: 2 an hour here; another key has its own allowance.
        assert (await o.http.post("/v1/templates/reminder/versions/1/test-send", headers=EDITOR,
                                  json={"to": unique_number("0003")})).status_code == 202
        limited = await o.http.post("/v1/templates/reminder/versions/1/test-send", headers=EDITOR,
                                    json={"to": unique_number("0004")})
        assert limited.status_code == 429 and limited.json()["type"] == "/problems/rate-limited"
        assert (await o.http.post("/v1/templates/reminder/versions/1/test-send", headers=ADMIN,
                                  json={"to": unique_number("0005")})).status_code == 202

        # Not a debtor contact: no ledger row anywhere counts it.
        ledger = (await o.http.get("/v1/debtors/deb-ts", headers=VIEWER)).json()["ledger"]
        assert all(not d["id"].startswith("test-send-") for d in ledger)
        assert (await o.http.get("/v1/debtors/test-send", headers=VIEWER)).json().get("ledger", []) == []


