"""The Colombian, Mexican, Peruvian and Chilean packs, with their calendar traps: Monday festivos,
border-zone DST, holy week (``test_rules.py`` has the US and the default pack)."""

from __future__ import annotations

from services.orchestrator.policy import Allow, Defer, Deny, Policy
from tests.orchestrator.policy.factories import contact, debtor, inbound, local, out, utc
from tests.orchestrator.policy.test_rules import decide, ids

# --- CO ---------------------------------------------------------------------------------------

BOG = "America/Bogota"


def co(**kw) -> object:
    return debtor("CO", zones=None, phone="+573001234567", **kw)


def test_colombia_monday_festivo_skipped(policy: Policy) -> None:
    # Sat 2025-03-22 after 15:00 -> Sunday closed -> Mon 24 San José (moved festivo) -> Tue 07:00
    decision = decide(policy, co(), contact(local(BOG, 2025, 3, 22, 15, 0)))
    assert isinstance(decision, Defer)
    assert decision.not_before == local(BOG, 2025, 3, 25, 7, 0)
    assert "holiday" in decision.rules[0].detail or "outside" in decision.rules[0].detail
    assert isinstance(decide(policy, co(), contact(local(BOG, 2025, 3, 22, 14, 59))), Allow)
    assert isinstance(decide(policy, co(), contact(local(BOG, 2025, 3, 21, 18, 59))), Allow)
    assert isinstance(decide(policy, co(), contact(local(BOG, 2025, 3, 21, 19, 0))), Defer)


def test_colombia_only_authorised_channels(policy: Policy) -> None:
    d = co(channels=frozenset({"sms", "email"}))
    denied = decide(policy, d, contact(local(BOG, 2025, 3, 4, 10), "voice"))
    assert isinstance(denied, Deny)
    assert ids(denied) == {"CO.ley2300.authorized_channels"}
    assert isinstance(decide(policy, d, contact(local(BOG, 2025, 3, 4, 10), "sms")), Allow)


def test_colombia_one_contact_per_day_after_direct_contact(policy: Policy) -> None:
    sent = [out(local(BOG, 2025, 3, 4, 10), "sms", "delivered")]
    # no direct contact yet: the daily limit does not apply
    assert isinstance(decide(policy, co(), contact(local(BOG, 2025, 3, 4, 15), "sms"), sent), Allow)
    ledger = [inbound(local(BOG, 2025, 3, 3, 9), "sms", "replied"), *sent]
    decision = decide(policy, co(), contact(local(BOG, 2025, 3, 4, 15), "sms"), ledger)
    assert isinstance(decision, Defer)
    assert decision.not_before == local(BOG, 2025, 3, 5, 7, 0)
    assert "CO.ley2300.one_per_day" in ids(decision)


def test_colombia_contact_started_by_the_debtor_uses_the_day(policy: Policy) -> None:
    ledger = [inbound(local(BOG, 2025, 3, 5, 9), "whatsapp", "replied")]
    decision = decide(policy, co(), contact(local(BOG, 2025, 3, 5, 11), "whatsapp"), ledger)
    assert isinstance(decision, Defer)
    assert decision.not_before == local(BOG, 2025, 3, 6, 7, 0)


def test_colombia_one_channel_per_iso_week(policy: Policy) -> None:
    ledger = [out(local(BOG, 2025, 3, 3, 10), "voice", "conversation")]  # Monday: direct contact
    decision = decide(policy, co(), contact(local(BOG, 2025, 3, 5, 10), "sms"), ledger)
    assert isinstance(decision, Defer)
    assert decision.not_before == local(BOG, 2025, 3, 10, 7, 0)  # next Monday
    assert "CO.ley2300.one_channel_per_week" in ids(decision)
    assert isinstance(decide(policy, co(), contact(local(BOG, 2025, 3, 5, 10), "voice"), ledger), Allow)


def test_colombia_week_boundary_and_rolling_override(policy: Policy) -> None:
    ledger = [inbound(local(BOG, 2025, 3, 1, 9), "sms", "replied"),
              out(local(BOG, 2025, 3, 8, 10), "sms", "delivered")]  # Saturday
    monday = contact(local(BOG, 2025, 3, 10, 10), "voice")
    assert isinstance(decide(policy, co(), monday, ledger), Allow)
    from services.orchestrator.policy import load_policy

    rolling = load_policy(overrides={"CO.ley2300.one_channel_per_week": {"window": {"rolling_days": 7}}})
    decision = decide(rolling, co(), monday, ledger)
    assert isinstance(decision, Defer)
    assert decision.not_before == local(BOG, 2025, 3, 15, 8, 0)  # Saturday opens at 08:00


# --- MX, PE, CL -------------------------------------------------------------------------------


def test_mexico_tijuana_follows_us_dst_and_mexico_city_does_not(policy: Policy) -> None:
    tijuana = debtor("MX", zones=None, phone="+526641234567")
    decision = decide(policy, tijuana, contact(utc(2025, 7, 1, 13, 30)))  # 06:30 PDT
    assert isinstance(decision, Defer)
    assert decision.not_before == utc(2025, 7, 1, 14, 0)  # 07:00 PDT
    cdmx = debtor("MX", zones=None, phone=None)
    assert isinstance(decide(policy, cdmx, contact(utc(2025, 7, 1, 13, 30))), Allow)  # 07:30 CST
    late = decide(policy, cdmx, contact(local("America/Mexico_City", 2025, 7, 1, 22, 0)))
    assert isinstance(late, Defer)
    assert late.not_before == local("America/Mexico_City", 2025, 7, 2, 7, 0)
    many = [out(local("America/Mexico_City", 2025, 7, 1, 8 + i)) for i in range(12)]
    assert isinstance(decide(policy, cdmx, contact(local("America/Mexico_City", 2025, 7, 1, 21)), many), Allow)


def test_peru_weekdays_only_and_feriados(policy: Policy) -> None:
    d = debtor("PE", zones=None, phone=None)
    lima = "America/Lima"
    decision = decide(policy, d, contact(local(lima, 2025, 7, 25, 20, 0), "email"))
    assert isinstance(decision, Defer)
    assert decision.not_before == local(lima, 2025, 7, 30, 7, 0)  # 28 and 29 July are feriados
    assert isinstance(decide(policy, d, contact(local(lima, 2025, 7, 26, 10), "whatsapp")), Defer)


def test_chile_autumn_dst_and_sunday(policy: Policy) -> None:
    d = debtor("CL", zones=None, phone=None)
    # Sat 2025-04-05 20:30 (-03); DST ends at midnight; Sunday closed; Monday 08:00 is -04
    decision = decide(policy, d, contact(utc(2025, 4, 5, 23, 30)))
    assert isinstance(decision, Defer)
    assert decision.not_before == utc(2025, 4, 7, 12, 0)


def test_chile_one_call_per_iso_week(policy: Policy) -> None:
    d = debtor("CL", zones=None, phone=None)
    scl = "America/Santiago"
    saturday = [out(local(scl, 2025, 4, 12, 10))]
    assert isinstance(decide(policy, d, contact(local(scl, 2025, 4, 14, 9)), saturday), Allow)
    monday = [out(local(scl, 2025, 4, 14, 9))]
    decision = decide(policy, d, contact(local(scl, 2025, 4, 15, 9)), monday)
    assert isinstance(decision, Defer)
    assert decision.not_before == local(scl, 2025, 4, 21, 8, 0)


def test_chile_messages_two_per_week_two_full_days_apart(policy: Policy) -> None:
    d = debtor("CL", zones=None, phone=None)
    scl = "America/Santiago"
    monday = [out(local(scl, 2025, 5, 5, 9), "sms", "delivered")]
    decision = decide(policy, d, contact(local(scl, 2025, 5, 6, 9), "email"), monday)
    assert isinstance(decision, Defer)
    assert decision.not_before == local(scl, 2025, 5, 8, 8, 0)  # Thursday: Tue and Wed in between
    two = [*monday, out(local(scl, 2025, 5, 8, 9), "whatsapp", "delivered")]
    decision = decide(policy, d, contact(local(scl, 2025, 5, 9, 9), "sms"), two)
    assert isinstance(decision, Defer)
    assert decision.not_before == local(scl, 2025, 5, 12, 8, 0)  # next ISO week (Sunday closed)


def test_chile_holy_week(policy: Policy) -> None:
    d = debtor("CL", zones=None, phone=None)
    scl = "America/Santiago"
    decision = decide(policy, d, contact(local(scl, 2025, 4, 17, 20, 0), "email"))
    assert decision.not_before == local(scl, 2025, 4, 21, 8, 0)  # Good Friday, Holy Saturday, Sunday
