"""Invariants over generated histories, packs and contacts, checked against the naive checker."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import phonenumbers
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from phonenumbers.timezone import time_zones_for_number

from services.orchestrator.policy import (
    AccountState,
    Allow,
    DebtorContext,
    Defer,
    Deny,
    LedgerEntry,
    Policy,
    ProposedContact,
    StrategyLimits,
    Suppression,
    evaluate,
    load_policy,
)
from tests.orchestrator.policy.checker import violations

POLICY: Policy = load_policy()
ZONES = {
    "US": [("America/Chicago",), ("America/New_York", "America/Los_Angeles"), ("America/Phoenix",)],
    "US-MA": [("America/New_York",)],
    "CO": [("America/Bogota",)],
    "MX": [("America/Tijuana",), ("America/Mexico_City", "America/Tijuana")],
    "PE": [("America/Lima",)],
    "CL": [("America/Santiago",)],
    "BR": [("America/Sao_Paulo",)],
}
PHONE = "+13125550100"


def with_phone_zones(zones: tuple[str, ...]) -> tuple[str, ...]:
    """The debtor may be where the address says or where the number says: both must be lawful."""
    phone = time_zones_for_number(phonenumbers.parse(PHONE))
    return tuple(dict.fromkeys(zones + tuple(phone)))
BASE = datetime(2025, 1, 1, tzinfo=UTC)
CHANNELS = ["voice", "sms", "email", "whatsapp"]
OUTCOMES = ["conversation", "voicemail", "no_answer", "busy", "not_connected", "sent", "delivered", "failed",
            "replied"]
# Modest by default so the suite stays fast; POLICY_EXAMPLES=2000 for a deeper run. No example
# database: the tests must not write into the working tree.
EXAMPLES = int(os.environ.get("POLICY_EXAMPLES", "150"))
FAST = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow])


@st.composite
def scenarios(draw: st.DrawFn) -> dict:
    jurisdiction = draw(st.sampled_from(sorted(ZONES)))
    own_zones = draw(st.sampled_from(ZONES[jurisdiction]))
    authorised = draw(st.sampled_from([None, frozenset({"voice", "sms"}), frozenset(CHANNELS)]))
    debtor = DebtorContext("d", jurisdiction, own_zones, PHONE, authorised)
    zones = with_phone_zones(own_zones)
    now = BASE + timedelta(minutes=draw(st.integers(0, 365 * 24 * 60)))
    history = []
    for _ in range(draw(st.integers(0, 14))):
        inbound = draw(st.booleans()) and draw(st.booleans()) and draw(st.booleans())
        before = timedelta(minutes=draw(st.integers(-120, 12 * 24 * 60)))
        history.append(LedgerEntry(
            draw(st.sampled_from(CHANNELS)), "inbound" if inbound else "outbound", now - before,
            draw(st.sampled_from(["A1", "A1", "A2"])), draw(st.sampled_from(OUTCOMES)),
            draw(st.booleans()) and draw(st.booleans()),
            draw(st.sampled_from(["collection"] * 6 + ["opt_out_confirmation"])),
        ))
    status = draw(st.sampled_from(["active"] * 8 + ["promised", "paid", "disputed", "ceased"]))
    promise = None
    if status == "promised":
        promise = draw(st.one_of(
            st.dates(date(2025, 1, 1), date(2026, 2, 1)),
            st.integers(0, 40 * 24 * 60).map(lambda m: now + timedelta(minutes=m - 600)),
        ))
    account = AccountState("A1", status, promise)
    kind = draw(st.sampled_from(["collection"] * 8 + ["opt_out_confirmation", "cease_notice", "dispute_ack"]))
    contact = ProposedContact(draw(st.sampled_from(CHANNELS)), now, "A1", kind, draw(st.booleans()))
    suppressions = [Suppression("sms", PHONE)] if draw(st.booleans()) and draw(st.booleans()) else []
    limits = draw(st.sampled_from([
        StrategyLimits(), StrategyLimits(min_gap=timedelta(hours=3)), StrategyLimits(daily_caps={"sms": 1}),
    ]))
    return {"debtor": debtor, "zones": zones, "account": account, "ledger": history, "contact": contact,
            "suppressions": suppressions, "limits": limits}


def run(s: dict, at: datetime | None = None):
    contact = s["contact"] if at is None else s["contact"].at_time(at)
    return evaluate(s["debtor"], s["account"], s["ledger"], contact, POLICY,
                    suppressions=s["suppressions"], limits=s["limits"])


def broken(s: dict, at: datetime) -> set[str]:
    contact = s["contact"].at_time(at)
    return violations(POLICY, s["debtor"], s["zones"], s["account"], s["ledger"], contact, at,
                      s["suppressions"], s["limits"])


@FAST
@given(scenarios())
def test_allow_never_breaks_a_rule_and_a_clean_contact_is_allowed(s: dict) -> None:
    decision = run(s)
    found = broken(s, s["contact"].at)
    if isinstance(decision, Allow):
        assert found == set()
    elif isinstance(decision, Defer):
        assert found and "deny" not in found
    if not found:
        assert isinstance(decision, Allow)
    if "deny" in found:
        assert isinstance(decision, Deny)


def _probe_instants(s: dict, start: datetime, end: datetime) -> list[datetime]:
    """Instants in [start, end) where a wrong deferral would most likely show: boundaries."""
    tz = ZoneInfo(s["zones"][0])
    probes = {start, end - timedelta(minutes=1), end - timedelta(microseconds=1)}
    day = start.astimezone(tz).date()
    for _ in range(min(70, (end - start).days + 2)):
        for hh in (0, 7, 8, 12, 15, 19, 20, 21):
            for delta in (timedelta(0), timedelta(minutes=-1), timedelta(minutes=1)):
                probes.add(datetime.combine(day, time(hh), tzinfo=tz).astimezone(UTC) + delta)
        day += timedelta(days=1)
    return sorted(p for p in probes if start <= p < end)


@FAST
@given(scenarios())
def test_defer_is_lawful_and_earliest(s: dict) -> None:
    decision = run(s)
    if not isinstance(decision, Defer):
        return
    nb = decision.not_before
    now = s["contact"].at
    assert nb > now
    assert broken(s, nb) == set()
    assert isinstance(run(s, nb), Allow)
    minute_before = nb - timedelta(minutes=1)
    if minute_before >= now:
        assert not isinstance(run(s, minute_before), Allow)
    for probe in _probe_instants(s, now, nb):
        assert broken(s, probe), f"{probe} was lawful before not_before {nb}"


def _window_violations(debtor: DebtorContext, zones: tuple[str, ...], ledger: list[LedgerEntry]) -> list[str]:
    """Scan every window of every cap over the whole replayed ledger."""
    bad = []
    for spec in POLICY.rule_specs(debtor.jurisdiction):
        if spec["type"] != "cap" or spec.get("requires_direct_contact"):
            continue
        for name in zones:
            tz = ZoneInfo(name)
            counted = [
                e for e in ledger
                if e.channel in spec.get("count_channels", spec["channels"])
                and e.outcome not in spec.get("exclude_outcomes", [])
            ]
            days = [e.at.astimezone(tz).date() for e in counted]
            for d in set(days):
                window = spec["window"]
                if window == "day":
                    n = days.count(d)
                elif window == "iso_week":
                    n = sum(1 for x in days if x.isocalendar()[:2] == d.isocalendar()[:2])
                else:
                    n = sum(1 for x in days if d - timedelta(days=window["rolling_days"]) < x <= d)
                if "max" in spec and n > spec["max"]:
                    bad.append(f"{spec['id']} {d} {n}")
            if spec.get("min_day_gap"):
                ordered = sorted(days)
                for a, b in zip(ordered, ordered[1:], strict=False):
                    if (b - a).days < spec["min_day_gap"]:
                        bad.append(f"{spec['id']} gap {a} {b}")
    return bad


@settings(max_examples=max(EXAMPLES // 2, 10), deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(
    jurisdiction=st.sampled_from(sorted(ZONES)),
    pick=st.integers(0, 1),
    start=st.integers(0, 365 * 24 * 60),
    stream=st.lists(
        st.tuples(st.integers(0, 36 * 60), st.sampled_from(CHANNELS),
                  st.sampled_from(["conversation", "voicemail", "no_answer", "busy", "delivered"])),
        min_size=5, max_size=30,
    ),
)
def test_replayed_stream_never_exceeds_a_cap(jurisdiction: str, pick: int, start: int, stream: list) -> None:
    own_zones = ZONES[jurisdiction][min(pick, len(ZONES[jurisdiction]) - 1)]
    debtor = DebtorContext("d", jurisdiction, own_zones, PHONE)
    zones = with_phone_zones(own_zones)
    account = AccountState("A1")
    ledger: list[LedgerEntry] = []
    t = BASE + timedelta(minutes=start)
    for gap, channel, outcome in stream:
        t += timedelta(minutes=gap)
        contact = ProposedContact(channel, t, "A1")
        decision = evaluate(debtor, account, ledger, contact, POLICY)
        if isinstance(decision, Defer):
            t = decision.not_before
            decision = evaluate(debtor, account, ledger, contact.at_time(t), POLICY)
            assert isinstance(decision, Allow)
        if isinstance(decision, Allow):
            ledger.append(LedgerEntry(channel, "outbound", t, "A1", outcome))
    assert _window_violations(debtor, zones, ledger) == []
    # after a conversation, no call for the rest of the 7-day block (US) and one contact a day (CO)
    for spec in POLICY.rule_specs(jurisdiction):
        if spec["type"] == "after_conversation":
            tz = ZoneInfo(zones[0])
            for i, e in enumerate(ledger):
                if e.outcome == "conversation" and e.channel == "voice":
                    for later in ledger[i + 1:]:
                        gap_days = (later.at.astimezone(tz).date() - e.at.astimezone(tz).date()).days
                        assert not (later.channel == "voice" and gap_days < spec["days"])
