"""One test per rule and per pack, with the calendar traps: DST, Monday festivos, zones."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from services.orchestrator.policy import (
    Allow,
    Defer,
    Deny,
    Policy,
    StrategyLimits,
    Suppression,
    evaluate,
)
from tests.orchestrator.policy.factories import account, contact, debtor, inbound, local, out, utc

CHI = "America/Chicago"


def decide(policy: Policy, d, c, ledger=(), acct=None, **kw):
    return evaluate(d, acct or account(), list(ledger), c, policy, **kw)


def ids(decision) -> set[str]:
    return {r.id for r in decision.rules}


# --- US: hours ---------------------------------------------------------------------------------


def test_us_hours_window_is_half_open(policy: Policy) -> None:
    d = debtor()
    assert isinstance(decide(policy, d, contact(local(CHI, 2025, 6, 10, 8, 0))), Allow)
    assert isinstance(decide(policy, d, contact(local(CHI, 2025, 6, 10, 20, 59))), Allow)
    at_nine = decide(policy, d, contact(local(CHI, 2025, 6, 10, 21, 0)))
    assert isinstance(at_nine, Defer)
    assert at_nine.not_before == local(CHI, 2025, 6, 11, 8, 0)
    assert ids(at_nine) == {"US.fdcpa.hours"}
    assert at_nine.rules[0].source.startswith("15 U.S.C. 1692c(a)(1)")


def test_us_allow_lists_the_rules_that_applied(policy: Policy) -> None:
    decision = decide(policy, debtor(), contact(local(CHI, 2025, 6, 10, 12, 0)))
    assert isinstance(decision, Allow)
    assert {"US.fdcpa.hours", "US.reg_f.call_frequency", "US.reg_f.after_conversation"} <= ids(decision)


def test_us_spring_forward_opens_at_eight_daylight_time(policy: Policy) -> None:
    d = debtor(zones=("America/New_York",), phone=None)
    # Sat 2025-03-08 21:30 EST; clocks jump 02:00 -> 03:00 on Sunday: 08:00 EDT is 12:00 UTC, not 13:00
    decision = decide(policy, d, contact(local("America/New_York", 2025, 3, 8, 21, 30)))
    assert isinstance(decision, Defer)
    assert decision.not_before == utc(2025, 3, 9, 12, 0)


def test_us_fall_back_opens_at_eight_standard_time(policy: Policy) -> None:
    d = debtor(zones=("America/New_York",), phone=None)
    decision = decide(policy, d, contact(utc(2025, 11, 2, 2, 0)))  # Sat 22:00 EDT
    assert isinstance(decision, Defer)
    assert decision.not_before == utc(2025, 11, 2, 13, 0)  # Sun 08:00 EST


def test_arizona_has_no_dst_and_zone_comes_from_the_phone(policy: Policy) -> None:
    d = debtor(zones=None, phone="+16025550100")
    decision = decide(policy, d, contact(utc(2025, 7, 1, 14, 30)))  # 07:30 MST
    assert isinstance(decision, Defer)
    assert decision.not_before == utc(2025, 7, 1, 15, 0)
    assert isinstance(decide(policy, d, contact(utc(2025, 1, 10, 15, 0))), Allow)  # 08:00 MST in winter


def test_address_zone_and_phone_zone_combine(policy: Policy) -> None:
    # Lives in New York (debtor zone) with a Chicago number: 08:30 in New York is 07:30 in Chicago.
    d = debtor(zones=("America/New_York",), phone="+13125550100")
    early = decide(policy, d, contact(local("America/New_York", 2025, 6, 10, 8, 30)))
    assert isinstance(early, Defer)
    assert early.not_before == local("America/Chicago", 2025, 6, 10, 8, 0)
    # 20:30 in Chicago is 21:30 in New York: too late there.
    late = decide(policy, d, contact(local("America/Chicago", 2025, 6, 10, 20, 30)))
    assert isinstance(late, Defer)


def test_ambiguous_zones_must_be_lawful_in_every_one(policy: Policy) -> None:
    d = debtor(zones=("America/New_York", "America/Los_Angeles"))
    early = decide(policy, d, contact(local("America/New_York", 2025, 6, 10, 8, 30)))
    assert isinstance(early, Defer)
    assert early.not_before == local("America/Los_Angeles", 2025, 6, 10, 8, 0)
    late = decide(policy, d, contact(local("America/Los_Angeles", 2025, 6, 10, 18, 30)))
    assert isinstance(late, Defer)
    assert late.not_before == local("America/Los_Angeles", 2025, 6, 11, 8, 0)
    assert isinstance(decide(policy, d, contact(local("America/New_York", 2025, 6, 10, 12, 0))), Allow)


def test_unknown_zone_falls_back_to_every_us_zone(policy: Policy) -> None:
    d = debtor(zones=None, phone="+18005550100")  # toll-free: not geographic
    decision = decide(policy, d, contact(utc(2025, 6, 10, 12, 0)))  # 08:00 EDT, 02:00 HST
    assert isinstance(decision, Defer)
    assert decision.not_before == utc(2025, 6, 10, 18, 0)  # 08:00 in Honolulu


# --- US: Regulation F call frequency ----------------------------------------------------------


def _calls(days_and_counts: dict[int, int], outcome: str = "no_answer") -> list:
    ledger = []
    for day, n in days_and_counts.items():
        for i in range(n):
            ledger.append(out(local(CHI, 2025, 6, day, 9 + i), outcome=outcome))
    return ledger


def test_seventh_call_allowed_eighth_deferred_until_oldest_leaves(policy: Policy) -> None:
    d = debtor()
    six = _calls({2: 3, 3: 3})
    assert isinstance(decide(policy, d, contact(local(CHI, 2025, 6, 5, 10)), six), Allow)
    seven = _calls({2: 4, 3: 3})
    decision = decide(policy, d, contact(local(CHI, 2025, 6, 5, 10)), seven)
    assert isinstance(decision, Defer)
    # calls on June 2 leave the 7-day window (June 2..8) at local midnight of June 9; then hours
    assert decision.not_before == local(CHI, 2025, 6, 9, 8, 0)
    assert "US.reg_f.call_frequency" in ids(decision)


def test_rolling_window_counts_local_days_not_hours(policy: Policy) -> None:
    d = debtor()
    seven = _calls({2: 7})
    # 2025-06-08 23:00 CDT is still day 7 of the window that starts on June 2
    assert isinstance(decide(policy, d, contact(local(CHI, 2025, 6, 8, 20)), seven), Defer)
    assert isinstance(decide(policy, d, contact(local(CHI, 2025, 6, 9, 8)), seven), Allow)


@pytest.mark.parametrize("outcome", ["busy", "not_connected", "failed"])
def test_busy_and_unconnected_calls_do_not_count(policy: Policy, outcome: str) -> None:
    ledger = _calls({2: 4, 3: 2}) + [out(local(CHI, 2025, 6, 4, 9), outcome=outcome)]
    assert isinstance(decide(policy, debtor(), contact(local(CHI, 2025, 6, 5, 10)), ledger), Allow)


def test_voicemail_counts(policy: Policy) -> None:
    ledger = _calls({2: 4, 3: 2}) + [out(local(CHI, 2025, 6, 4, 9), outcome="voicemail")]
    assert isinstance(decide(policy, debtor(), contact(local(CHI, 2025, 6, 5, 10)), ledger), Defer)


def test_consented_calls_neither_count_nor_are_capped(policy: Policy) -> None:
    ledger = _calls({2: 4, 3: 2}) + [out(local(CHI, 2025, 6, 4, 9), consented=True)]
    assert isinstance(decide(policy, debtor(), contact(local(CHI, 2025, 6, 5, 10)), ledger), Allow)
    seven = _calls({2: 4, 3: 3})
    consented = contact(local(CHI, 2025, 6, 5, 10), consented=True)
    assert isinstance(decide(policy, debtor(), consented, seven), Allow)


def test_call_cap_is_per_debt(policy: Policy) -> None:
    seven = _calls({2: 4, 3: 3})
    other_debt = contact(local(CHI, 2025, 6, 5, 10), account_id="D2")
    assert isinstance(decide(policy, debtor(), other_debt, seven, acct=account()), Allow)


def test_texts_are_not_capped_by_the_call_rule(policy: Policy) -> None:
    seven = _calls({2: 4, 3: 3})
    assert isinstance(decide(policy, debtor(), contact(local(CHI, 2025, 6, 5, 10), "sms"), seven), Allow)


# --- US: after a telephone conversation -------------------------------------------------------


def test_conversation_six_days_ago_blocks_until_day_eight(policy: Policy) -> None:
    ledger = [out(local(CHI, 2025, 6, 2, 14), outcome="conversation")]
    decision = decide(policy, debtor(), contact(local(CHI, 2025, 6, 8, 10)), ledger)
    assert isinstance(decision, Defer)
    assert decision.not_before == local(CHI, 2025, 6, 9, 8, 0)
    assert "US.reg_f.after_conversation" in ids(decision)
    assert isinstance(decide(policy, debtor(), contact(local(CHI, 2025, 6, 9, 8)), ledger), Allow)


def test_inbound_conversation_blocks_too_but_not_other_media(policy: Policy) -> None:
    ledger = [inbound(local(CHI, 2025, 6, 2, 14))]
    assert isinstance(decide(policy, debtor(), contact(local(CHI, 2025, 6, 4, 10)), ledger), Defer)
    assert isinstance(decide(policy, debtor(), contact(local(CHI, 2025, 6, 4, 10), "email"), ledger), Allow)


def test_conversation_about_another_debt_does_not_block(policy: Policy) -> None:
    ledger = [out(local(CHI, 2025, 6, 2, 14), outcome="conversation", account_id="D2")]
    assert isinstance(decide(policy, debtor(), contact(local(CHI, 2025, 6, 4, 10)), ledger), Allow)


# --- US: opt-out, cease; account state --------------------------------------------------------


def test_opted_out_medium_is_denied_but_one_confirmation_allowed(policy: Policy) -> None:
    at = local(CHI, 2025, 6, 4, 10)
    stop = [Suppression("sms", "+1 (312) 555-0100", at - timedelta(hours=1))]
    denied = decide(policy, debtor(), contact(at, "sms"), suppressions=stop)
    assert isinstance(denied, Deny)
    assert "US.reg_f.opt_out" in ids(denied)
    confirm = contact(at, "sms", kind="opt_out_confirmation")
    assert isinstance(decide(policy, debtor(), confirm, suppressions=stop), Allow)
    sent = [out(at - timedelta(minutes=30), "sms", "delivered", kind="opt_out_confirmation")]
    assert isinstance(decide(policy, debtor(), confirm, sent, suppressions=stop), Deny)
    # other channels and other addresses are unaffected
    assert isinstance(decide(policy, debtor(), contact(at, "voice"), suppressions=stop), Allow)
    elsewhere = debtor(phone="+13125550199")
    assert isinstance(decide(policy, elsewhere, contact(at, "sms"), suppressions=stop), Allow)


def test_suppression_applies_in_every_jurisdiction(policy: Policy) -> None:
    at = local("America/Bogota", 2025, 6, 4, 10)
    stop = [Suppression("sms", "+573001234567")]
    d = debtor("CO", zones=None, phone="+573001234567")
    denied = decide(policy, d, contact(at, "sms"), suppressions=stop)
    assert isinstance(denied, Deny)
    assert ids(denied) == {"core.suppression"}


def test_cease_allows_only_the_final_notice(policy: Policy) -> None:
    at = local(CHI, 2025, 6, 4, 10)
    ceased = account("ceased")
    denied = decide(policy, debtor(), contact(at, "email"), acct=ceased)
    assert isinstance(denied, Deny)
    assert {"US.fdcpa.cease", "core.account_status"} <= ids(denied)
    assert isinstance(decide(policy, debtor(), contact(at, "email", kind="cease_notice"), acct=ceased), Allow)
    night = contact(local(CHI, 2025, 6, 4, 22), "email", kind="cease_notice")
    assert isinstance(decide(policy, debtor(), night, acct=ceased), Defer)


def test_account_states(policy: Policy) -> None:
    at = local(CHI, 2025, 6, 4, 10)
    assert isinstance(decide(policy, debtor(), contact(at), acct=account("paid")), Deny)
    assert isinstance(decide(policy, debtor(), contact(at), acct=account("disputed")), Deny)
    ack = contact(at, "email", kind="dispute_ack")
    assert isinstance(decide(policy, debtor(), ack, acct=account("disputed")), Allow)
    promised = decide(policy, debtor(), contact(at), acct=account("promised", date(2025, 6, 10)))
    assert isinstance(promised, Defer)
    assert promised.not_before == local(CHI, 2025, 6, 10, 8, 0)
    assert ids(promised) == {"core.promise_to_pay", "US.fdcpa.hours"}
    until_noon = account("promised", local(CHI, 2025, 6, 10, 12))
    assert decide(policy, debtor(), contact(at), acct=until_noon).not_before == local(CHI, 2025, 6, 10, 12)
    assert isinstance(decide(policy, debtor(), contact(at), acct=account("promised")), Deny)


def test_nothing_lawful_within_the_horizon_is_denied(policy: Policy) -> None:
    at = local(CHI, 2025, 6, 4, 10)
    far = account("promised", date(2025, 12, 1))
    decision = decide(policy, debtor(), contact(at), acct=far)
    assert isinstance(decision, Deny)
    assert "core.horizon" in ids(decision)


# --- US-MA overlay ----------------------------------------------------------------------------


def test_massachusetts_adds_two_calls_or_texts_per_week(policy: Policy) -> None:
    d = debtor("US-MA", zones=None, phone="+16175550100")
    ledger = [out(local("America/New_York", 2025, 6, 2, 10)),
              out(local("America/New_York", 2025, 6, 3, 10), "sms", "delivered")]
    decision = decide(policy, d, contact(local("America/New_York", 2025, 6, 4, 10), "sms"), ledger)
    assert isinstance(decision, Defer)
    assert decision.not_before == local("America/New_York", 2025, 6, 9, 8, 0)
    assert "US-MA.940cmr.call_text_frequency" in ids(decision)
    assert isinstance(decide(policy, d, contact(local("America/New_York", 2025, 6, 4, 10), "email"), ledger),
                      Allow)
    # the federal rules still apply in the state
    assert isinstance(decide(policy, d, contact(local("America/New_York", 2025, 6, 4, 21), "email")), Defer)


# --- default pack, unknown zone, strategy ------------------------------------------------------


def test_default_pack_for_unknown_jurisdiction(policy: Policy) -> None:
    d = debtor("BR", zones=("America/Sao_Paulo",), phone=None)
    sp = "America/Sao_Paulo"
    one = [out(local(sp, 2025, 6, 3, 9), "email", "delivered")]
    decision = decide(policy, d, contact(local(sp, 2025, 6, 3, 12), "sms"), one)
    assert isinstance(decision, Defer)
    assert decision.not_before == local(sp, 2025, 6, 4, 8, 0)
    assert "default.contacts_per_day" in ids(decision)
    three = [out(local(sp, 2025, 6, day, 9), "email", "delivered") for day in (2, 3, 4)]
    assert decide(policy, d, contact(local(sp, 2025, 6, 5, 12)), three).not_before == local(sp, 2025, 6, 9, 8)
    holiday = decide(policy, d, contact(local(sp, 2025, 4, 21, 12)))  # Tiradentes
    assert holiday.not_before == local(sp, 2025, 4, 22, 8, 0)


def test_no_zone_at_all_is_denied(policy: Policy) -> None:
    decision = decide(policy, debtor("ZZ", zones=None, phone=None), contact(utc(2025, 6, 3, 12)))
    assert isinstance(decision, Deny)
    assert ids(decision) == {"core.time_zone"}


def test_strategy_limits(policy: Policy) -> None:
    at = local(CHI, 2025, 6, 4, 10)
    ledger = [out(at - timedelta(hours=1), "email", "delivered")]
    gap = StrategyLimits(min_gap=timedelta(hours=4))
    decision = decide(policy, debtor(), contact(at, "sms"), ledger, limits=gap)
    assert isinstance(decision, Defer)
    assert decision.not_before == at + timedelta(hours=3)
    assert ids(decision) == {"strategy.min_gap"}
    daily = StrategyLimits(daily_caps={"email": 1})
    decision = decide(policy, debtor(), contact(at, "email"), ledger, limits=daily)
    assert decision.not_before == local(CHI, 2025, 6, 5, 8, 0)
    weekly = StrategyLimits(weekly_caps={"email": 1})
    assert decide(policy, debtor(), contact(at, "email"), ledger, limits=weekly).not_before == local(
        CHI, 2025, 6, 11, 8, 0
    )
    notice = contact(at, "email", kind="cease_notice")
    assert isinstance(decide(policy, debtor(), notice, ledger, limits=gap), Allow)


def test_min_gap_ignores_a_message_that_never_arrived(policy: Policy) -> None:
    at = local(CHI, 2025, 6, 4, 10)
    gap = StrategyLimits(min_gap=timedelta(hours=4))
    undelivered = [out(at - timedelta(minutes=5), "sms", "failed")]
    assert isinstance(decide(policy, debtor(), contact(at, "email"), undelivered, limits=gap), Allow)


def test_future_ledger_entries_are_not_history_yet(policy: Policy) -> None:
    at = local(CHI, 2025, 6, 4, 10)
    later = [out(at + timedelta(hours=1), outcome="conversation")]
    assert isinstance(decide(policy, debtor(), contact(at), later), Allow)
