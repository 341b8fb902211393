"""Suppressions (list, add, remove, export) and request search through the API."""

from __future__ import annotations

import csv
import io

from tests.orchestrator.conftest import EDITOR, VIEWER, FakeClock, Orchestrator, request_event

ADMIN = {"Authorization": "Bearer admin-key"}


async def test_suppressions_are_listed_added_with_a_reason_removed_by_an_admin_and_exported(
    orchestrator: Orchestrator,
) -> None:
    http = orchestrator.http
    missing = await http.post("/v1/suppressions", json={"debtor_id": "deb-x", "channel": "sms"}, headers=EDITOR)
    assert missing.status_code == 422 and "reason" in missing.json()["detail"]
    body = {"debtor_id": "deb-x", "channel": "sms", "address": "+1 212 555 0123", "reason": "legal_hold"}
    assert (await http.post("/v1/suppressions", json=body, headers=VIEWER)).status_code == 403
    added = await http.post("/v1/suppressions", json=body, headers=EDITOR)
    assert added.status_code == 201
    row = added.json()
    # stored normalised (E.164), as the runtime compares addresses
    assert row["address"] == "+12125550123" and row["reason"] == "legal_hold" and row["source"] == "ops"
    assert (await http.post("/v1/suppressions", json=body, headers=EDITOR)).json()["id"] == row["id"]  # no duplicate
    await http.post("/v1/suppressions", json={"debtor_id": "deb-y", "channel": "email", "reason": "complaint"},
                    headers=EDITOR)

    result = (await orchestrator.submit(request_event("deb-x", channel="sms", days_past_due=0))).json()["results"][0]
    assert result["status"] == "rejected" and "suppressed (legal_hold)" in result["reason"]

    listed = (await http.get("/v1/suppressions?debtor_id=deb-x", headers=VIEWER)).json()["suppressions"]
    assert [(s["channel"], s["reason"]) for s in listed] == [("sms", "legal_hold")]
    by_reason = (await http.get("/v1/suppressions?reason=complaint", headers=VIEWER)).json()["suppressions"]
    assert [(s["debtor_id"], s["address"]) for s in by_reason] == [("deb-y", None)]
    page = (await http.get("/v1/suppressions?limit=1", headers=VIEWER)).json()
    rest = (await http.get(f"/v1/suppressions?limit=1&before_id={page['next_before_id']}", headers=VIEWER)).json()
    assert {page["suppressions"][0]["debtor_id"], rest["suppressions"][0]["debtor_id"]} == {"deb-x", "deb-y"}

    exported = await http.get("/v1/suppressions/export", headers=EDITOR)
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(exported.text)))
    assert {(r["debtor_id"], r["channel"], r["reason"]) for r in table} == {
        ("deb-x", "sms", "legal_hold"), ("deb-y", "email", "complaint")}
    assert (await http.get("/v1/suppressions/export", headers=VIEWER)).status_code == 403

    assert (await http.delete(f"/v1/suppressions/{row['id']}", headers=EDITOR)).status_code == 403
    lifted = await http.delete(f"/v1/suppressions/{row['id']}", headers=ADMIN)
    assert lifted.status_code == 200 and lifted.json()["lifted_at"] is not None
    assert (await http.delete("/v1/suppressions/999999", headers=ADMIN)).status_code == 404
    assert (await http.get("/v1/suppressions?debtor_id=deb-x", headers=VIEWER)).json()["suppressions"] == []
    history = (await http.get("/v1/suppressions?debtor_id=deb-x&active=false", headers=VIEWER)).json()
    assert len(history["suppressions"]) == 1
    result = (await orchestrator.submit(request_event("deb-x", channel="sms", days_past_due=0))).json()["results"][0]
    assert result["status"] == "dispatched"


async def test_requests_are_found_by_debtor_campaign_status_and_time_with_the_timeline_one_link_away(
    orchestrator: Orchestrator, clock: FakeClock,
) -> None:
    http = orchestrator.http
    early = request_event("deb-a", channel="sms", days_past_due=0, campaign_id="spring")
    clock.advance(minutes=10)
    later = request_event("deb-a", channel="email", days_past_due=0, campaign_id="summer")
    bad = request_event("deb-b", channel="sms", days_past_due=0, template="no_such_template", campaign_id="spring")
    other = request_event("deb-b", channel="email", days_past_due=0)
    await orchestrator.submit(early)
    clock.advance(minutes=10)
    await orchestrator.submit(later, bad, other)

    async def ids(query: str) -> list[str]:
        answer = await http.get(f"/v1/contact-requests?{query}", headers=VIEWER)
        assert answer.status_code == 200, answer.text
        return [r["id"] for r in answer.json()["requests"]]

    assert await ids("debtor_id=deb-a") == [later.id, early.id]  # newest first
    assert set(await ids("campaign_id=spring")) == {early.id, bad.id}
    assert await ids("status=rejected") == [bad.id]
    assert await ids("campaign_id=spring&status=dispatched") == [early.id]
    since = clock.now.isoformat().replace("+00:00", "Z")
    assert set(await ids(f"since={since}")) == {later.id, bad.id, other.id}
    assert await ids(f"until={since}") == [early.id]

    first = (await http.get("/v1/contact-requests?limit=2", headers=VIEWER)).json()
    second = (await http.get("/v1/contact-requests", params={"limit": 2, "before": first["next"]},
                             headers=VIEWER)).json()
    seen = [r["id"] for r in first["requests"] + second["requests"]]
    assert sorted(seen) == sorted([early.id, later.id, bad.id, other.id]) and second["next"] is None

    item = next(r for r in first["requests"] + second["requests"] if r["id"] == bad.id)
    assert item["campaign_id"] == "spring" and item["status"] == "rejected"
    timeline = (await http.get(item["timeline"], headers=VIEWER)).json()
    assert timeline["history"][0]["rules"] == ["intake.validation"]
    assert (await http.get("/v1/contact-requests?since=yesterday", headers=VIEWER)).status_code == 422
    assert (await http.get("/v1/contact-requests")).status_code == 401
