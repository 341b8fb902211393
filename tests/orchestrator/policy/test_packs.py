"""Packs are data: composition, operator directories and overrides, validation at load."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.orchestrator.policy import Allow, Defer, Policy, evaluate, load_policy
from tests.orchestrator.policy.factories import account, contact, debtor, local


def test_composition_chains(policy: Policy) -> None:
    assert policy.chain("US-MA") == ("US", "US-MA")
    assert policy.chain("US-TX") == ("US",)
    assert policy.chain("co") == ("CO",)
    assert policy.chain("BR") == ("default",)
    assert policy.pack("US-TX").holiday_subdivision == "TX"
    assert all(r["source"] for j in ("US-MA", "CO", "MX", "PE", "CL", "BR") for r in policy.rule_specs(j))


def test_operator_pack_directory_adds_a_jurisdiction(tmp_path: Path) -> None:
    (tmp_path / "AR.yaml").write_text(
        "id: AR\ncountry: AR\ndefault_zones: [America/Argentina/Buenos_Aires]\nrules:\n"
        "  - id: AR.hours\n    type: hours\n    source: Ley 24.240 art. 8 bis\n"
        "    windows: {mon-fri: ['09:00-18:00']}\n    closed_on_holidays: true\n",
        encoding="utf-8",
    )
    policy = load_policy(extra_dirs=[tmp_path])
    d = debtor("AR", zones=None, phone=None)
    ba = "America/Argentina/Buenos_Aires"
    decision = evaluate(d, account(), [], contact(local(ba, 2025, 6, 3, 8, 30)), policy)
    assert isinstance(decision, Defer)
    assert decision.not_before == local(ba, 2025, 6, 3, 9, 0)


def test_overrides_change_parameters_without_code() -> None:
    policy = load_policy(overrides={"MX.condusef.hours": {"windows": {"mon-sun": ["09:00-20:00"]}}})
    d = debtor("MX", zones=None, phone=None)
    decision = evaluate(d, account(), [], contact(local("America/Mexico_City", 2025, 6, 3, 8)), policy)
    assert decision.not_before == local("America/Mexico_City", 2025, 6, 3, 9, 0)
    zones = load_policy(overrides={"MX": {"default_zones": ["America/Tijuana"]}})
    assert zones.pack("MX").default_zones == ("America/Tijuana",)
    at = contact(local("America/Tijuana", 2025, 6, 3, 7, 30))
    assert isinstance(evaluate(d, account(), [], at, zones), Allow)


@pytest.mark.parametrize(
    "overrides",
    [
        {"NOPE.rule": {"max": 1}},
        {"US.reg_f.call_frequency": {"type": "hours"}},
        {"US.reg_f.call_frequency": {"window": "fortnight"}},
        {"US.fdcpa.hours": {"windows": {"mon": ["10:00-09:00"]}}},
        {"US.fdcpa.hours": {"source": ""}},
    ],
)
def test_bad_packs_fail_at_load(overrides: dict) -> None:
    with pytest.raises(ValueError):
        load_policy(overrides=overrides)


def test_opt_out_confirmations_are_texts_for_texts_and_never_a_new_call(policy: Policy) -> None:
    for jurisdiction in ("US", "US-MA", "CO", "MX", "PE", "CL", "BR"):
        assert policy.opt_out_confirmation_channels(jurisdiction, "sms") == ("sms",)
        assert policy.opt_out_confirmation_channels(jurisdiction, "whatsapp") == ("whatsapp",)
        assert policy.opt_out_confirmation_channels(jurisdiction, "voice") == ()
        assert policy.opt_out_confirmation_channels(jurisdiction, "email") == ()
    texted = load_policy(overrides={"MX": {"opt_out_confirmation": {"voice": ["sms"], "sms": []}}})
    assert texted.opt_out_confirmation_channels("MX", "voice") == ("sms",)
    assert texted.opt_out_confirmation_channels("MX", "sms") == ()
    assert texted.opt_out_confirmation_channels("CO", "voice") == ()
