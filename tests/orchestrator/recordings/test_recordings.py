"""Recording in the orchestrator: the strategy turns it on, the packs give the notice, metadata joins the timeline."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import yaml

from services.orchestrator.policy import load_policy
from services.orchestrator.recordings.notices import recording_notice
from services.orchestrator.runtime.strategy import DEFAULT_PATH
from shared.events.contracts import CallRecorded, CallRecordedEvent
from tests.helpers import TopicReader, wait_for
from tests.orchestrator.conftest import VIEWER, FakeClock, make_settings, request_event, running

DISPATCHED = "cadencia.contact.dispatched.v1"


def test_each_jurisdiction_has_its_notice_and_all_party_states_hear_they_may_hang_up() -> None:
    policy = load_policy()
    assert recording_notice(policy, "US", "en-US") == "This call may be recorded and monitored."
    for all_party in ("US-MA", "US-CA", "US-FL"):
        assert "you may hang up now" in (recording_notice(policy, all_party, "en-US") or "")
    assert "you may hang up now" not in (recording_notice(policy, "US-TX", "en-US") or "")
    assert "Ley 1581 de 2012" in (recording_notice(policy, "CO", "es-CO") or "")
    assert "aviso de privacidad" in (recording_notice(policy, "MX", "es-MX") or "")
    assert "Ley 29733" in (recording_notice(policy, "PE", "es-PE") or "")
    assert "19.628" in (recording_notice(policy, "CL", "es-CL") or "")
    assert (recording_notice(policy, "AR", "es-AR") or "").startswith("Esta llamada está siendo grabada")


def recording_strategy(tmp_path: Path) -> str:
    raw = yaml.safe_load(DEFAULT_PATH.read_text(encoding="utf-8"))
    for segment in raw["segments"]:
        segment["record_calls"] = segment["name"] == "late"  # only late-stage calls are recorded
    path = tmp_path / "strategy.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return str(path)


async def test_recorded_segments_dispatch_with_the_notice_and_recordings_reach_the_debtor_timeline(
    kafka_settings, database_url, tmp_path: Path
) -> None:
    clock = FakeClock()
    settings = make_settings(kafka_settings, database_url, strategy_path=recording_strategy(tmp_path))
    async with running(settings, clock) as o, TopicReader(kafka_settings, o.topics.dispatch("voice")) as reader:
        cases = {
            "deb-r1": {"jurisdiction": "US-MA", "locale": "en-US", "days_past_due": 45},
            "deb-r2": {"jurisdiction": "CO", "locale": "es-CO", "days_past_due": 45, "time_zone": "America/Bogota",
                       "phone": "+573001234567", "debtor": {"authorized_channels": ["voice"]}},
            "deb-r3": {"jurisdiction": "US", "locale": "en-US", "days_past_due": 10},
        }
        events = {d: request_event(d, channel="voice", **fields) for d, fields in cases.items()}
        for event in events.values():
            assert (await o.submit(event)).json()["results"][0]["status"] == "dispatched"
        sent = await reader.wait_count(DISPATCHED, 3)
        by_debtor = {e.data.debtor_id: e.data for e in sent}
        assert by_debtor["deb-r1"].record_call and "you may hang up now" in by_debtor["deb-r1"].recording_notice
        assert by_debtor["deb-r2"].record_call and "Ley 1581" in by_debtor["deb-r2"].recording_notice
        assert not by_debtor["deb-r3"].record_call and by_debtor["deb-r3"].recording_notice is None

        dispatch = by_debtor["deb-r1"]
        at = datetime(2025, 3, 12, 15, 5, tzinfo=UTC)
        recorded = CallRecordedEvent(subject="deb-r1", data=CallRecorded(
            dispatch_id=dispatch.dispatch_id, request_id=dispatch.request_id, debtor_id="deb-r1", provider="twilio",
            call_sid="CA1", recording_sid="RE1", duration_s=42,
            url="https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE1", occurred_at=at))
        await o.publish(o.topics.contact_outcomes, recorded)
        await o.publish(o.topics.contact_outcomes, recorded)  # redelivered: one row

        async def timeline() -> list:
            response = await o.http.get("/v1/debtors/deb-r1/recordings", headers=VIEWER)
            return response.json()["items"]

        [item] = await wait_for(timeline, what="the recording on the timeline")
        assert (item["recording_sid"], item["dispatch_id"], item["duration_s"], item["call_sid"]) == (
            "RE1", dispatch.dispatch_id, 42, "CA1")
        assert item["url"].endswith("/Recordings/RE1")
        assert (await o.http.get("/v1/debtors/deb-r1/recordings")).status_code == 401
        assert len(await timeline()) == 1
