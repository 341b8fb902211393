"""Agent queues in the orchestrator: the strategy's queue rides on voice dispatches while it is open, and
agent outcomes (connected with talk time, abandoned) reach the ledger and the campaign's abandoned rate."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from services.orchestrator.agents.queues import is_open
from services.orchestrator.runtime.strategy import DEFAULT_PATH, AgentQueueConfig
from shared.events.contracts import DeliveryUpdated, DeliveryUpdatedEvent
from tests.helpers import TopicReader, wait_for
from tests.orchestrator.conftest import VIEWER, FakeClock, make_settings, request_event, running

DISPATCHED = "cadencia.contact.dispatched.v1"
QUEUE = {"dial": "sip:agents@pbx.example", "agents": 3, "wait_s": 15, "max_ratio": 2.5,
         "time_zone": "America/New_York", "hours": {"mon-fri": ["09:00-18:00"]}}


def test_a_queue_is_open_in_its_own_zone_and_hours() -> None:
    queue = AgentQueueConfig(**QUEUE)
    wednesday_11 = datetime(2025, 3, 12, 15, 0, tzinfo=UTC)  # 11:00 EDT
    assert is_open(queue, wednesday_11)
    assert not is_open(queue, wednesday_11 + timedelta(hours=8))  # 19:00
    assert not is_open(queue, datetime(2025, 3, 15, 15, 0, tzinfo=UTC))  # Saturday
    assert is_open(AgentQueueConfig(dial="+15550100"), datetime(2025, 3, 15, 3, 0, tzinfo=UTC))  # no hours: open


def strategy_with_queue(tmp_path: Path) -> str:
    raw = yaml.safe_load(DEFAULT_PATH.read_text(encoding="utf-8"))
    raw["agent_queues"] = {"late-us": QUEUE}
    for segment in raw["segments"]:
        if segment["name"] == "late":
            segment["agent_queue"] = "late-us"
    path = tmp_path / "strategy.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return str(path)


async def test_open_queues_ride_on_voice_dispatches_and_agent_outcomes_reach_the_ledger(
    kafka_settings, database_url, tmp_path: Path
) -> None:
    clock = FakeClock()
    settings = make_settings(kafka_settings, database_url, strategy_path=strategy_with_queue(tmp_path))
    async with running(settings, clock) as o, TopicReader(kafka_settings, o.topics.dispatch("voice")) as reader:
        talked = request_event("deb-a1", channel="voice", days_past_due=45, campaign_id="camp-1")
        left = request_event("deb-a2", channel="voice", days_past_due=45, campaign_id="camp-1")
        early = request_event("deb-a3", channel="voice", days_past_due=10, campaign_id="camp-1")
        for event in (talked, left, early):
            assert (await o.submit(event)).json()["results"][0]["status"] == "dispatched"
        clock.advance(hours=8)  # 19:00 in New York: still lawful to call, the queue is closed
        after_hours = request_event("deb-a4", channel="voice", days_past_due=45)
        assert (await o.submit(after_hours)).json()["results"][0]["status"] == "dispatched"
        sent = {e.data.debtor_id: e.data for e in await reader.wait_count(DISPATCHED, 4)}
        queue = sent["deb-a1"].agent_queue
        assert queue is not None and (queue.name, queue.dial, queue.agents, queue.wait_s, queue.campaign_id) == (
            "late-us", "sip:agents@pbx.example", 3, 15, "camp-1")
        assert sent["deb-a3"].agent_queue is None and sent["deb-a4"].agent_queue is None

        def outcome(debtor: str, status: str, talk: int | None = None) -> DeliveryUpdatedEvent:
            d = sent[debtor]
            return DeliveryUpdatedEvent(subject=debtor, data=DeliveryUpdated(
                dispatch_id=d.dispatch_id, request_id=d.request_id, debtor_id=debtor, channel="voice", status=status,
                provider="twilio", occurred_at=clock.now, talk_time_s=talk))

        for event in (outcome("deb-a1", "conversation"), outcome("deb-a1", "agent_connected", 95),
                      outcome("deb-a2", "conversation"), outcome("deb-a2", "abandoned")):
            await o.publish(o.topics.contact_outcomes, event)

        async def stats() -> dict:
            body = (await o.http.get("/v1/campaigns/camp-1/agent-calls", headers=VIEWER)).json()
            return body if body["agent_connected"] + body["abandoned"] == 2 and body["answered"] == 2 else {}

        body = await wait_for(stats, what="the campaign's agent outcomes")
        assert (body["answered"], body["agent_connected"], body["abandoned"], body["talk_time_s"]) == (2, 1, 1, 95)
        assert body["abandoned_rate"] == 0.5 and body["window_days"] == 30 and body["over_cap"]
        [call] = (await o.http.get("/v1/debtors/deb-a1/agent-calls", headers=VIEWER)).json()["items"]
        assert (call["status"], call["talk_time_s"], call["campaign_id"]) == ("agent_connected", 95, "camp-1")
        view = (await o.http.get("/v1/debtors/deb-a1", headers=VIEWER)).json()
        assert {o_["status"] for o_ in view["outcomes"]} >= {"conversation", "agent_connected"}

        # The request's timeline gets the talk time; the dashboard, every campaign's figures.
        timeline = (await o.http.get(f"/v1/contact-requests/{talked.id}/agent-calls", headers=VIEWER)).json()
        assert [(c["status"], c["talk_time_s"]) for c in timeline["items"]] == [("agent_connected", 95)]
        assert (await o.http.get(f"/v1/contact-requests/{early.id}/agent-calls", headers=VIEWER)).json() == {
            "items": []}
        missing = await o.http.get("/v1/contact-requests/no-such-request/agent-calls", headers=VIEWER)
        assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
        agents = (await o.http.get("/v1/stats?fresh=true", headers=VIEWER)).json()["agents"]
        [campaign] = agents["campaigns"]
        assert campaign == {**body, "campaign_id": "camp-1"}
        assert (agents["totals"]["answered"], agents["totals"]["talk_time_s"], agents["cap"]) == (2, 95, 0.03)
        # Thirty days later (by the hour) the calls have left the window.
        clock.advance(days=30, hours=2)
        later = (await o.http.get("/v1/campaigns/camp-1/agent-calls", headers=VIEWER)).json()
        assert (later["answered"], later["abandoned"], later["abandoned_rate"]) == (0, 0, 0.0)
