"""The simulation endpoint: exact request/response contract and problem+json on invalid input."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.orchestrator.policy import load_policy
from services.orchestrator.policy.schemas import EARLIEST_CONTACT, LATEST_CONTACT
from services.orchestrator.policy.views import router


def _app(with_policy: bool = True) -> tuple[FastAPI, bool]:
    app = FastAPI()
    installed = False
    try:
        http = importlib.import_module("shared.http")
        install = getattr(http, "install_problem_handlers", None)
        if install is not None:
            install(app)
            installed = True
    except ImportError:
        pass
    app.include_router(router)
    if with_policy:
        app.state.policy = load_policy()
    return app, installed


@pytest.fixture
async def client() -> AsyncIterator[tuple[httpx.AsyncClient, bool]]:
    app, installed = _app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        yield c, installed


def body(**changes: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "debtor": {"id": "d1", "jurisdiction": "US", "time_zones": ["America/Chicago"],
                   "phone": "+13125550100", "authorized_channels": None},
        "account": {"id": "D1", "status": "active", "promise_until": None},
        "history": [{"channel": "voice", "direction": "outbound", "at": "2025-06-02T15:00:00Z",
                     "account_id": "D1", "outcome": "no_answer", "consented": False}],
        "suppressions": [{"channel": "sms", "address": "+13125550100"}],
        "contact": {"channel": "voice", "at": "2025-06-08T15:00:00Z", "account_id": "D1",
                    "kind": "collection", "consented": False},
    }
    payload.update(changes)
    return payload


async def test_allow_matches_the_contract(client) -> None:
    c, _ = client
    r = await c.post("/v1/policy/evaluate", json=body())
    assert r.status_code == 200
    data = r.json()
    assert data["decision"] == "allow"
    assert "not_before" not in data
    assert {"US.fdcpa.hours", "US.reg_f.call_frequency"} <= {rule["id"] for rule in data["rules"]}
    for rule in data["rules"]:
        assert set(rule) == {"id", "source", "detail"} and rule["source"]


async def test_allow_says_until_when_it_holds(client) -> None:
    c, _ = client
    r = await c.post("/v1/policy/evaluate", json=body())
    data = r.json()
    assert data["decision"] == "allow"
    assert data["send_before"] == "2025-06-09T02:00:00Z"  # 21:00 CDT: FDCPA hours end
    bound = next(x for x in data["rules"] if x["id"] == "core.send_before")
    assert "US.fdcpa.hours" in bound["detail"]
    # the request's own expiry comes first
    payload = body()
    payload["contact"]["expires_at"] = "2025-06-08T16:30:00Z"
    r = await c.post("/v1/policy/evaluate", json=payload)
    assert r.json()["send_before"] == "2025-06-08T16:30:00Z"


async def test_defer_gives_utc_not_before_and_the_deciding_rules(client) -> None:
    c, _ = client
    calls = [{"channel": "voice", "direction": "outbound", "at": f"2025-06-02T{14 + i}:00:00Z",
              "account_id": "D1", "outcome": "voicemail", "consented": False} for i in range(7)]
    r = await c.post("/v1/policy/evaluate", json=body(history=calls))
    assert r.status_code == 200
    data = r.json()
    assert data["decision"] == "defer"
    assert data["not_before"] == "2025-06-09T13:00:00Z"  # 08:00 CDT once June 2 leaves the window
    assert "send_before" not in data
    rule = next(x for x in data["rules"] if x["id"] == "US.reg_f.call_frequency")
    assert rule["source"] == "12 CFR 1006.14(b)(2)(i)(A)"
    assert "limit 7" in rule["detail"]


async def test_deny_for_a_suppressed_medium(client) -> None:
    c, _ = client
    contact = {"channel": "sms", "at": "2025-06-08T15:00:00Z", "account_id": "D1", "kind": "collection",
               "consented": False}
    r = await c.post("/v1/policy/evaluate", json=body(contact=contact))
    assert r.status_code == 200
    data = r.json()
    assert data["decision"] == "deny"
    assert [x["id"] for x in data["rules"]] == ["US.reg_f.opt_out"]


async def test_time_zones_are_optional_and_derived_from_the_phone(client) -> None:
    c, _ = client
    payload = body()
    del payload["debtor"]["time_zones"]
    payload["contact"]["at"] = "2025-06-08T12:30:00Z"  # 07:30 in Chicago (from +1 312)
    r = await c.post("/v1/policy/evaluate", json=payload)
    assert r.json()["not_before"] == "2025-06-08T13:00:00Z"


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b["contact"].update(channel="pigeon"), "contact.channel"),
        (lambda b: b["history"][0].update(at="2025-06-02T15:00:00"), "history.0.at"),
        (lambda b: b["history"][0].update(outcome="maybe"), "history.0.outcome"),
        (lambda b: b["debtor"].update(time_zones=["Mars/Olympus"]), "debtor.time_zones"),
        (lambda b: b["account"].update(status="lost"), "account.status"),
        (lambda b: b.pop("contact"), "contact"),
        (lambda b: b["contact"].update(at="0001-01-01T00:00:00Z"), "contact.at"),
        (lambda b: b["contact"].update(at="0002-12-31T23:59:59.999999Z"), "contact.at"),
        (lambda b: b["contact"].update(at="9999-12-31T23:59:59Z"), "contact.at"),
        (lambda b: b.update(strategy={"min_gap_minutes": 120627793533178880}), "strategy.min_gap_minutes"),
        (lambda b: b.update(strategy={"min_gap_minutes": 366 * 24 * 60 + 1}), "strategy.min_gap_minutes"),
        (lambda b: b.update(strategy={"daily_caps": {"sms": -1}}), "strategy.daily_caps.sms"),
        (lambda b: b.update(strategy={"weekly_caps": {"email": 1001}}), "strategy.weekly_caps.email"),
    ],
)
async def test_invalid_input_is_a_422_problem(client, mutate, field: str) -> None:
    c, installed = client
    payload = body()
    mutate(payload)
    r = await c.post("/v1/policy/evaluate", json=payload)
    assert r.status_code == 422
    if installed:
        assert r.headers["content-type"].startswith("application/problem+json")
        data = r.json()
        assert {"type", "title", "status", "detail", "errors"} <= set(data)
        assert data["status"] == 422
        assert any(e["field"] == field or e["field"].startswith(field + ".") for e in data["errors"])
    else:
        assert field.split(".")[-1] in r.text


@pytest.mark.parametrize("at", [EARLIEST_CONTACT, LATEST_CONTACT], ids=["earliest", "latest"])
async def test_every_pack_and_channel_evaluates_at_the_ends_of_the_accepted_range(client, at) -> None:
    """The engine looks back over the longest gap and forward over its horizon from the contact: at the
    first and last instant the API accepts, with the largest limits, that stays within the calendar."""
    c, _ = client
    answers = []
    for jurisdiction in sorted(load_policy().specs):
        for channel in ("voice", "sms", "email", "whatsapp"):
            payload = body(strategy={"min_gap_minutes": 366 * 24 * 60, "daily_caps": {channel: 0},
                                     "weekly_caps": {channel: 1000}})
            payload["debtor"].update(jurisdiction=jurisdiction, time_zones=None)
            payload["history"][0]["at"] = _iso(at)
            payload["contact"].update(channel=channel, at=_iso(at))
            r = await c.post("/v1/policy/evaluate", json=payload)
            assert r.status_code == 200, (jurisdiction, channel, r.text)
            answers.append(r.json()["decision"])
    assert set(answers) <= {"allow", "defer", "deny"} and len(answers) >= 4 * 5


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


async def test_without_app_state_the_shipped_packs_are_loaded() -> None:
    app, _ = _app(with_policy=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        r = await c.post("/v1/policy/evaluate", json=body())
    assert r.json()["decision"] == "allow"


async def test_the_debtors_own_limits_are_accepted_and_cited(client) -> None:
    c, _ = client
    payload = body()
    payload["debtor"]["inconvenient_times"] = [{"start": "00:00", "end": "11:00", "channels": ["voice"],
                                                "source": "reply"}]
    r = await c.post("/v1/policy/evaluate", json=payload)  # 10:00 CDT
    data = r.json()
    assert data["decision"] == "defer" and data["not_before"] == "2025-06-08T16:00:00Z"
    rule = next(x for x in data["rules"] if x["id"] == "debtor.inconvenient_times")
    assert "1006.6(b)(1)" in rule["source"]
    payload = body()
    payload["account"]["represented_by_attorney"] = True
    data = (await c.post("/v1/policy/evaluate", json=payload)).json()
    assert data["decision"] == "deny" and [x["id"] for x in data["rules"]] == ["debtor.attorney"]
    payload = body()
    payload["debtor"]["inconvenient_times"] = [{"start": "25:00"}]
    assert (await c.post("/v1/policy/evaluate", json=payload)).status_code == 422
