"""Campaign control through the API: pausing defers contacts (never loses them); resuming releases them."""

from __future__ import annotations

from tests.helpers import TopicReader, wait_for
from tests.orchestrator.conftest import EDITOR, VIEWER, Orchestrator, request_event

ADMIN = {"Authorization": "Bearer admin-key"}
DISPATCHED = "cadencia.contact.dispatched.v1"


def sent(reader: TopicReader, request_id: str) -> list[object]:
    return [e for e in reader.of_type(DISPATCHED) if e.data.request_id == request_id]


async def status_of(o: Orchestrator, request_id: str) -> dict:
    return (await o.http.get(f"/v1/contact-requests/{request_id}", headers=VIEWER)).json()


async def test_pause_a_campaign_a_channel_and_everything_then_resume_each_contact_once(
    orchestrator: Orchestrator, kafka_settings
) -> None:
    o, t = orchestrator, orchestrator.topics
    http = o.http
    assert (await http.post("/v1/pauses", json={"scope": "all"}, headers=VIEWER)).status_code == 403
    bad = await http.post("/v1/pauses", json={"scope": "channel", "key": "fax"}, headers=EDITOR)
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
    assert (await http.post("/v1/pauses", json={"scope": "campaign"}, headers=EDITOR)).status_code == 422

    first = await http.post("/v1/pauses", json={"scope": "campaign", "key": "spring", "reason": "legal review"},
                            headers=EDITOR)
    assert first.status_code == 201 and first.json()["key"] == "spring"
    again = await http.post("/v1/pauses", json={"scope": "campaign", "key": "spring"}, headers=EDITOR)
    assert again.status_code == 200 and again.json()["reason"] == "legal review"  # idempotent

    async with TopicReader(kafka_settings, t.dispatch("sms"), t.dispatch("email")) as reader:
        spring = request_event("deb-p1", channel="sms", days_past_due=0, campaign_id="spring")
        other = request_event("deb-p2", channel="sms", days_past_due=0, campaign_id="summer")
        results = (await o.submit(spring, other)).json()["results"]
        assert [r["status"] for r in results] == ["deferred", "dispatched"]
        assert results[0]["reason"] == "paused by ops: campaign spring (legal review)"
        history = (await status_of(o, spring.id))["history"]
        assert history[-1]["rules"] == ["ops.pause"]

        assert (await http.post("/v1/pauses", json={"scope": "channel", "key": "sms"}, headers=EDITOR)).status_code \
            == 201
        sms = request_event("deb-p3", channel="sms", days_past_due=0, campaign_id="summer")
        email = request_event("deb-p4", channel="email", days_past_due=0, campaign_id="summer")
        assert [r["status"] for r in (await o.submit(sms, email)).json()["results"]] == ["deferred", "dispatched"]

        assert (await http.post("/v1/pauses", json={"scope": "all", "reason": "kill switch"},
                                headers=EDITOR)).status_code == 201
        email2 = request_event("deb-p5", channel="email", days_past_due=0)
        assert (await o.submit(email2)).json()["results"][0]["status"] == "deferred"

        listed = (await http.get("/v1/pauses", headers=VIEWER)).json()
        assert {(p["scope"], p["key"]) for p in listed["pauses"]} == {("campaign", "spring"), ("channel", "sms"),
                                                                     ("all", "*")}
        assert listed["held"] == 3
        stats = (await http.get("/v1/stats?fresh=true", headers=VIEWER)).json()
        assert len(stats["pauses"]) == 3 and stats["held"] == 3
        assert stats["deferrals_by_rule"]["ops.pause"] == 3

        # Lifting the kill switch releases everything held; what another pause still covers is held again.
        resumed = (await http.delete("/v1/pauses/all/*", headers=EDITOR)).json()
        assert resumed == {"scope": "all", "key": "*", "released": 3}
        await wait_for(lambda: sent(reader, email2.id), what="email released")
        await wait_for(lambda: status_of(o, sms.id), what="sms decided")

        async def held(n: int) -> bool:
            return bool((await http.get("/v1/pauses", headers=VIEWER)).json()["held"] == n)

        await wait_for(lambda: held(2), what="sms and spring held again")
        assert (await http.delete("/v1/pauses/channel/sms", headers=EDITOR)).json()["released"] == 2
        await wait_for(lambda: sent(reader, sms.id), what="sms released")
        await wait_for(lambda: held(1), what="spring held again")
        assert (await http.delete("/v1/pauses/campaign/spring", headers=EDITOR)).json()["released"] == 1
        await wait_for(lambda: sent(reader, spring.id), what="spring released")
        assert (await http.delete("/v1/pauses/campaign/spring", headers=EDITOR)).status_code == 404

        await wait_for(lambda: held(0), what="nothing held")
        for request in (spring, other, sms, email, email2):
            assert len(sent(reader, request.id)) == 1, request.id  # each contact exactly once
            assert (await status_of(o, request.id))["status"] == "dispatched"

