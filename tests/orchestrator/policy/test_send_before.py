"""``Allow.send_before``: the end of the lawful window an allowed contact may still start in."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import given

from services.orchestrator.policy import Allow, Defer, LedgerEntry, Policy, ProposedContact, evaluate, load_policy
from tests.orchestrator.policy.factories import account, debtor, local, out
from tests.orchestrator.policy.test_properties import FAST, _probe_instants, broken, run, scenarios

MARGIN = timedelta(seconds=20)
WITH_MARGIN = load_policy(send_margin=MARGIN)
BOGOTA, SANTIAGO, NEW_YORK = "America/Bogota", "America/Santiago", "America/New_York"


def message(at, channel: str = "sms", expires_at=None) -> ProposedContact:
    return ProposedContact(channel, at, "D1", expires_at=expires_at)  # type: ignore[arg-type]


def co() -> object:
    return debtor("CO", (BOGOTA,), "+573001234567")


def decide(policy: Policy, who, contact: ProposedContact, ledger=()):
    return evaluate(who, account(), list(ledger), contact, policy)


def test_colombia_friday_window_ends_at_19_less_the_margin() -> None:
    # Friday 2026-11-27 18:59:30 in Bogotá: 30 s of the window left, 20 s of margin.
    decision = decide(WITH_MARGIN, co(), message(local(BOGOTA, 2026, 11, 27, 18, 59, 30)))
    assert isinstance(decision, Allow)
    assert decision.send_before == local(BOGOTA, 2026, 11, 27, 18, 59, 40)
    bound = next(r for r in decision.rules if r.id == "core.send_before")
    assert "CO.ley2300.hours" in bound.detail


def test_less_than_the_margin_left_defers_to_the_next_window() -> None:
    # 18:59:45: 15 s left < 20 s of margin. Saturday's window opens at 08:00.
    decision = decide(WITH_MARGIN, co(), message(local(BOGOTA, 2026, 11, 27, 18, 59, 45)))
    assert isinstance(decision, Defer)
    assert decision.not_before == local(BOGOTA, 2026, 11, 28, 8, 0)
    assert "core.send_before" in {r.id for r in decision.rules}
    # asked at the send_before it had: the same next window
    at_bound = decide(WITH_MARGIN, co(), message(local(BOGOTA, 2026, 11, 27, 18, 59, 40)))
    assert isinstance(at_bound, Defer) and at_bound.not_before == local(BOGOTA, 2026, 11, 28, 8, 0)


def test_saturday_ends_at_15_and_the_next_window_skips_sunday_and_a_festivo(policy: Policy) -> None:
    # 2025-01-04 is a Saturday; Monday 2025-01-06 is a festivo (Reyes Magos, moved to Monday).
    sat = decide(policy, co(), message(local(BOGOTA, 2025, 1, 4, 14, 0)))
    assert isinstance(sat, Allow) and sat.send_before == local(BOGOTA, 2025, 1, 4, 15, 0)
    after = decide(policy, co(), message(local(BOGOTA, 2025, 1, 4, 15, 0)))
    assert isinstance(after, Defer) and after.not_before == local(BOGOTA, 2025, 1, 7, 7, 0)


def test_a_window_running_past_midnight_ends_where_a_barred_day_begins() -> None:
    # An operator pack open around the clock on weekdays only: lawful until Saturday starts.
    always = load_policy(overrides={"CL.ley19496.hours": {"windows": {"mon-fri": ["00:00-24:00"]}}})
    decision = decide(always, debtor("CL", (SANTIAGO,), "+56221234567"),
                      message(local(SANTIAGO, 2026, 11, 25, 23, 0)))  # a Wednesday
    assert isinstance(decision, Allow)
    assert decision.send_before == local(SANTIAGO, 2026, 11, 28, 0, 0)


def test_chile_message_at_19_59_ends_at_20() -> None:
    decision = decide(WITH_MARGIN, debtor("CL", (SANTIAGO,), "+56221234567"),
                      message(local(SANTIAGO, 2026, 11, 27, 19, 59)))
    assert isinstance(decision, Allow) and decision.send_before == local(SANTIAGO, 2026, 11, 27, 19, 59, 40)


def test_every_candidate_zone_closes_the_window(policy: Policy) -> None:
    # Address in Los Angeles, a Boston number: 21:00 in New York comes first.
    who = debtor("US", ("America/Los_Angeles",), "+16175550100")
    decision = decide(policy, who, message(local(NEW_YORK, 2026, 11, 25, 12, 0)))
    assert isinstance(decision, Allow)
    assert decision.send_before == local(NEW_YORK, 2026, 11, 25, 21, 0)


def test_us_ma_cap_window_and_hours_agree() -> None:
    # One text already today counts toward 940 CMR's two per 7 days; the cap holds all evening,
    # so only the hours end the window, in the same zone the cap counts days in.
    who = debtor("US-MA", (NEW_YORK,), "+16175550100")
    earlier = [out(local(NEW_YORK, 2026, 11, 25, 9, 0), channel="sms", outcome="delivered")]
    decision = decide(WITH_MARGIN, who, message(local(NEW_YORK, 2026, 11, 25, 20, 30)), earlier)
    assert isinstance(decision, Allow)
    assert decision.send_before == local(NEW_YORK, 2026, 11, 25, 20, 59, 40)
    assert "US-MA.940cmr.call_text_frequency" in {r.id for r in decision.rules}
    # Too late tonight: 08:00 tomorrow, when the cap (one counted text) still allows it.
    late = decide(WITH_MARGIN, who, message(local(NEW_YORK, 2026, 11, 25, 20, 59, 50)), earlier)
    assert isinstance(late, Defer) and late.not_before == local(NEW_YORK, 2026, 11, 26, 8, 0)
    # Two counted texts: the cap, not the hours, decides, and it counts New York days.
    full = earlier + [out(local(NEW_YORK, 2026, 11, 25, 10, 0), channel="sms", outcome="delivered")]
    capped = decide(WITH_MARGIN, who, message(local(NEW_YORK, 2026, 11, 25, 20, 30)), full)
    assert isinstance(capped, Defer) and capped.not_before == local(NEW_YORK, 2026, 12, 2, 8, 0)


def test_the_request_expiry_ends_the_window(policy: Policy) -> None:
    at = local(BOGOTA, 2026, 11, 25, 10, 0)
    decision = decide(policy, co(), message(at, expires_at=at + timedelta(minutes=30)))
    assert isinstance(decision, Allow) and decision.send_before == at + timedelta(minutes=30)
    # expiring inside the margin: nothing lawful before it ends
    soon = decide(WITH_MARGIN, co(), message(at, expires_at=at + timedelta(seconds=10)))
    assert isinstance(soon, Defer) and soon.not_before >= at + timedelta(seconds=10)
    assert "request.expires_at" in {r.id for r in soon.rules}


def test_a_later_ledger_entry_that_fills_a_cap_ends_the_window(policy: Policy) -> None:
    who = debtor("US", ("America/Chicago",))
    day = [out(local("America/Chicago", 2026, 11, 25, 9 + i, 0), outcome="voicemail") for i in range(6)]
    later = LedgerEntry("voice", "outbound", local("America/Chicago", 2026, 11, 25, 17, 0), "D1", "voicemail")
    decision = decide(policy, who, message(local("America/Chicago", 2026, 11, 25, 16, 0), "voice"), day + [later])
    assert isinstance(decision, Allow)
    assert decision.send_before == local("America/Chicago", 2026, 11, 25, 17, 0)


@FAST
@given(scenarios())
def test_an_allowed_contact_is_lawful_until_send_before_and_not_at_it(s: dict) -> None:
    decision = run(s)
    if not isinstance(decision, Allow) or decision.send_before is None:
        return
    now, end = s["contact"].at, decision.send_before
    assert end > now
    for probe in _probe_instants(s, now, end):
        assert broken(s, probe) == set(), f"{probe} is before send_before {end} but breaks a rule"
    assert broken(s, end), f"nothing stops holding at send_before {end}"
