"""Pure parts of the runtime: request validation, strategy segments, status ranking, ledger outcomes."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.orchestrator.runtime import validation
from services.orchestrator.runtime.operations import STATUS_RANK, channel_order, ledger_outcome
from services.orchestrator.runtime.strategy import DEFAULT_PATH, Strategy
from shared.events.contracts import Account
from tests.orchestrator.conftest import T0, request_event

JURISDICTIONS = {"US", "US-MA", "CO", "MX", "PE", "CL"}


def account(days: int, balance: str = "100", risk: float | None = None, product: str = "card") -> Account:
    return Account(id="a", product=product, balance=Decimal(balance), currency="USD", days_past_due=days,
                   risk_score=risk)


def test_a_valid_request_has_no_problems() -> None:
    assert validation.problems(request_event("d").data, JURISDICTIONS) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"phone": "+1 212 555"}, "E.164"),
        ({"phone": "555 0123"}, "E.164"),  # a national number too short for the debtor's country (US)
        ({"phone": "+52 55 1234"}, "E.164"),
        ({"email": "nope@"}, "e-mail"),
        ({"jurisdiction": "AR"}, "jurisdiction"),
        ({"time_zone": "America/Nowhere"}, "time zone"),
        ({"currency": "usd"}, "currency"),
        ({"currency": "ABC"}, "currency"),
        ({"channel": "whatsapp"}, "no whatsapp"),
        ({"channel": "auto", "phone": None, "email": None}, "no phone"),
        ({"not_before": T0, "expires_at": T0 - timedelta(hours=1)}, "expires_at"),
    ],
)
def test_requests_failing_checks_beyond_the_schema_are_explained(change: dict, expected: str) -> None:
    problems = validation.problems(request_event("d", **change).data, JURISDICTIONS)
    assert any(expected in p for p in problems), problems


def test_numbers_are_canonical_e164_whatever_the_spelling() -> None:
    for written in ("2125550123", "(212) 555-0123", "+1 212-555-0123", "＋１ ２１２ ５５５ ０１２３ "):
        request = validation.canonical(request_event("d", phone=written, email="  Debtor@Example.COM").data)
        assert validation.problems(request, JURISDICTIONS) == []
        assert request.debtor.phone == "+12125550123" and request.debtor.email == "Debtor@example.com"
    mexican = validation.canonical(request_event("d", jurisdiction="MX", phone="55 1234 5678").data)
    assert mexican.debtor.phone == "+525512345678"


def test_the_shipped_strategy_segments_by_days_past_due() -> None:
    strategy = Strategy.load()
    assert strategy.plan(account(5)).segment == "early"
    assert strategy.plan(account(45)).segment == "late"
    assert strategy.plan(account(200)).segment == "residual"
    assert strategy.plan(account(0)).segment == "default"
    early = strategy.plan(account(5))
    assert early.channels[0] == "sms" and early.min_gap == timedelta(hours=4) and early.template_suffix == "_early"
    assert strategy.plan(account(45)).channels[0] == "voice"
    assert DEFAULT_PATH.name == "strategy.yaml"


def test_segments_can_use_balance_risk_and_product(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("""
defaults: {channels: [email], daily_caps: {sms: 2}}
segments:
  - {name: big-risky, balance: [5000, null], risk_score: [0.7, 1], channels: [voice, sms], weekly_caps: {voice: 3}}
  - {name: mortgage, products: [mortgage], channels: [email, sms], variant: B}
""", encoding="utf-8")
    strategy = Strategy.load(path)
    big = strategy.plan(account(10, "9000", 0.9))
    assert (big.segment, big.channels, big.weekly_caps, big.daily_caps) == (
        "big-risky", ("voice", "sms"), {"voice": 3}, {"sms": 2})
    assert strategy.plan(account(10, "9000", 0.1)).segment == "default"
    assert strategy.plan(account(10, "9000")).segment == "default"  # no score: a risk band cannot match
    mortgage = strategy.plan(account(10, product="mortgage"))
    assert (mortgage.segment, mortgage.variant) == ("mortgage", "B")


@pytest.mark.parametrize("plan", [
    "min_gap_hours: 1e20", "min_gap_hours: 8785", "min_gap_hours: -1",
    "daily_caps: {sms: -1}", "weekly_caps: {voice: 1001}",
])
def test_a_strategy_with_limits_the_engine_cannot_look_back_over_fails_at_start_up(tmp_path: Path, plan: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(f"defaults: {{channels: [sms], {plan}}}\n", encoding="utf-8")
    with pytest.raises(ValidationError, match="defaults"):
        Strategy.load(path)
    path.write_text("defaults: {channels: [sms], min_gap_hours: 8784, daily_caps: {sms: 0}}\n", encoding="utf-8")
    assert Strategy.load(path).plan(account(5)).min_gap == timedelta(days=366)


def test_auto_channel_order_follows_preference_and_authorisation() -> None:
    plan = Strategy.load().plan(account(5))
    event = request_event("d", channel="auto", debtor={"preferred_channel": "email"})
    assert channel_order(event.data, plan)[0] == "email"
    event = request_event("d", channel="auto", debtor={"authorized_channels": ["email", "voice"]})
    assert channel_order(event.data, plan) == ["email", "voice"]
    assert channel_order(request_event("d", channel="voice").data, plan) == ["voice"]


def test_statuses_only_move_forward_and_map_to_the_policy_vocabulary() -> None:
    assert STATUS_RANK["delivered"] > STATUS_RANK["sent"] > STATUS_RANK["accepted"]
    assert STATUS_RANK["undelivered"] > STATUS_RANK["sent"]
    assert STATUS_RANK["delivered"] > STATUS_RANK["failed"]
    assert ledger_outcome("voice", "busy") == "busy"
    assert ledger_outcome("voice", "failed") == "not_connected"
    assert ledger_outcome("voice", "dispatched") == "sent"  # a placed call counts until told otherwise
    assert ledger_outcome("sms", "read") == "delivered"
    assert ledger_outcome("email", "bounced") == "failed"


def test_json_columns_read_with_orjson_decode_as_the_json_module_does_and_fall_back_for_what_it_refuses() -> None:
    import json
    import math

    from sqlalchemy.dialects import postgresql, sqlite

    from services.orchestrator.runtime.repository import _FastJSON

    read = _FastJSON().process_result_value
    text = json.dumps({"debtor": {"name": "Ana Pérez", "phone": None}, "balance": 1234.5, "n": [1, 2, True]})
    assert read(text, sqlite.dialect()) == json.loads(text)
    assert read("null", sqlite.dialect()) is None and read(None, sqlite.dialect()) is None
    # The json module writes NaN for a float that is not a number; orjson refuses it.
    assert math.isnan(read('{"x": NaN}', sqlite.dialect())["x"])
    # A driver that decodes JSON itself hands over the value: kept as it is.
    assert read({"a": 1}, postgresql.dialect()) == {"a": 1}
