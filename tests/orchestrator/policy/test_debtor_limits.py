"""The debtor's own limits: inconvenient times (12 CFR 1006.6(b)(1)) and an attorney (1006.6(b)(2))."""

from __future__ import annotations

from services.orchestrator.policy import AccountState, Allow, Defer, Deny, Policy, ProposedContact, evaluate
from services.orchestrator.policy.models import DebtorContext, InconvenientTime
from tests.orchestrator.policy.factories import local

NY = "America/New_York"


def who(*limits: InconvenientTime) -> DebtorContext:
    return DebtorContext("d1", "US", (NY,), "+12125550123", None, limits)


def at(channel: str, *when: int, kind: str = "collection") -> ProposedContact:
    return ProposedContact(channel, local(NY, *when), "D1", kind)  # type: ignore[arg-type]


def test_no_calls_before_10_defers_calls_only_and_cites_the_debtor(policy: Policy) -> None:
    limits = who(InconvenientTime(start="00:00", end="10:00", channels=("voice",), source="reply"))
    call = evaluate(limits, AccountState("D1"), [], at("voice", 2026, 11, 25, 9, 0), policy)
    assert isinstance(call, Defer) and call.not_before == local(NY, 2026, 11, 25, 10, 0)
    rule = next(r for r in call.rules if r.id == "debtor.inconvenient_times")
    assert "1006.6(b)(1)" in rule.source and "reply" in rule.source
    text = evaluate(limits, AccountState("D1"), [], at("sms", 2026, 11, 25, 9, 0), policy)
    assert isinstance(text, Allow)


def test_not_on_weekends_and_not_after_six_end_the_window_and_defer_to_monday(policy: Policy) -> None:
    limits = who(InconvenientTime(days=("sat", "sun")), InconvenientTime(start="18:00", end="24:00"))
    friday = evaluate(limits, AccountState("D1"), [], at("sms", 2026, 11, 27, 17, 0), policy)
    assert isinstance(friday, Allow) and friday.send_before == local(NY, 2026, 11, 27, 18, 0)
    saturday = evaluate(limits, AccountState("D1"), [], at("email", 2026, 11, 28, 12, 0), policy)
    assert isinstance(saturday, Defer) and saturday.not_before == local(NY, 2026, 11, 30, 8, 0)


def test_a_represented_debtor_gets_no_collection_contact_but_notices_still_go(policy: Policy) -> None:
    represented = AccountState("D1", represented=True)
    denied = evaluate(who(), represented, [], at("sms", 2026, 11, 25, 12, 0), policy)
    assert isinstance(denied, Deny)
    (rule,) = denied.rules
    assert rule.id == "debtor.attorney" and "1006.6(b)(2)" in rule.source
    notice = evaluate(who(), represented, [], at("email", 2026, 11, 25, 12, 0, kind="dispute_ack"), policy)
    assert not isinstance(notice, Deny)
