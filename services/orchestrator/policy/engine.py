"""``evaluate``: the pure decision function. It never reads the clock or the database."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from services.orchestrator.policy.debtor_limits import ATTORNEY, inconvenient_rules
from services.orchestrator.policy.deny_rules import OptOutRule, suppression_block
from services.orchestrator.policy.lawful_until import EXPIRES_RULE, lawful_until
from services.orchestrator.policy.models import (
    EPOCH,
    NO_LIMITS,
    AccountState,
    Allow,
    AppliedRule,
    DebtorContext,
    Decision,
    Defer,
    Deny,
    LedgerEntry,
    ProposedContact,
    StrategyLimits,
    Suppression,
    epoch_us,
)
from services.orchestrator.policy.packs import CORE_SOURCE, Policy
from services.orchestrator.policy.rules import DAY_US, NEVER, EvalContext, TimeRule, ZoneView
from services.orchestrator.policy.zones import phone_zones, zone

_MAX_STEPS = 10_000
SEND_BEFORE_RULE = "core.send_before"
SEND_BEFORE_SOURCE = "Cadencia: a contact is lawful when the provider request leaves (docs/internals.md)"
_DIRECT_OUTCOMES = frozenset({"conversation", "replied"})


def candidate_zones(debtor: DebtorContext, default_zones: Sequence[str]) -> tuple[str, ...]:
    """Every zone the debtor may be in: the debtor's own zones and the phone number's.

    Known zones from both sources are combined (an address in Chicago and a New York number make
    the contact lawful only when it is lawful in both, as Reg F's commentary expects); with
    neither, the jurisdiction's defaults apply.
    """
    names: list[str] = list(debtor.time_zones or ())
    if debtor.phone:
        names += [z for z in phone_zones(debtor.phone) if z not in names]
    return tuple(names) if names else tuple(default_zones)


def evaluate(
    debtor: DebtorContext,
    account: AccountState,
    ledger: Sequence[LedgerEntry],
    contact: ProposedContact,
    policy: Policy,
    now: datetime | None = None,
    *,
    suppressions: Sequence[Suppression] = (),
    limits: StrategyLimits = NO_LIMITS,
) -> Decision:
    """Decide whether ``contact`` may happen at ``now`` (default ``contact.at``).

    Returns ``Allow(send_before)``, ``Defer(not_before)`` with the earliest instant at which every
    rule holds in every candidate zone, or ``Deny`` for what time cannot fix (or nothing lawful within
    the policy's horizon). An instant counts as lawful only when at least ``policy.send_margin``
    remains before some rule stops holding; ``Allow.send_before`` is that end less the margin.
    Ledger entries after the instant being tested are not yet history and are ignored for it.
    """
    t0 = contact.us if now is None else epoch_us(now)
    pack = policy.pack(debtor.jurisdiction)
    zone_names = candidate_zones(debtor, pack.default_zones)

    floor = t0 - pack.lookback_days * DAY_US
    if limits.min_gap:
        floor = min(floor, t0 - (limits.min_gap // timedelta(microseconds=1)) - DAY_US)
    entries: list[tuple[int, LedgerEntry]] = []
    direct_t = NEVER
    for e in ledger:
        t = e.us
        if (e.direction == "inbound" or e.outcome in _DIRECT_OUTCOMES) and t < direct_t:
            direct_t = t
        if t >= floor:
            entries.append((t, e))
    entries.sort(key=_first)

    ctx = EvalContext(
        debtor, account, contact, t0, ledger, entries, suppressions, direct_t,
        pack.holiday_country, pack.holiday_subdivision,
    )

    denied: list[AppliedRule] = []
    deny_rules = (*pack.deny_rules, ATTORNEY) if account.represented else pack.deny_rules
    for deny_rule in deny_rules:
        if deny_rule.applies(contact):
            why = deny_rule.deny(ctx)
            if why is not None:
                denied.append(deny_rule.applied(why))
    if suppressions and not any(isinstance(r, OptOutRule) for r in pack.deny_rules):
        why = suppression_block(ctx)
        if why is not None:
            denied.append(AppliedRule("core.suppression", "Cadencia suppression list (docs/internals.md)", why))
    if not zone_names:
        denied.append(AppliedRule("core.time_zone", CORE_SOURCE,
                                  f"no time zone known for debtor {debtor.id} in {pack.jurisdiction}"))
    if denied:
        return Deny(tuple(denied))

    active: list[tuple[TimeRule, object]] = []
    rules = pack.time_rules + policy.strategy_rules(limits) if limits is not NO_LIMITS else pack.time_rules
    if debtor.inconvenient:
        rules = rules + inconvenient_rules(debtor.inconvenient)
    for rule in rules:
        if rule.applies(contact):
            state = rule.prepare(ctx)
            if state is not None:
                active.append((rule, state))

    tzs = [zone(n) for n in zone_names]
    margin = policy.send_margin // timedelta(microseconds=1)
    horizon = t0 + policy.horizon_days * DAY_US
    failed: dict[str, AppliedRule] = {}
    t = t0
    for _ in range(_MAX_STEPS):
        if t > horizon:
            break
        nxt = t
        blocked = False
        for tz in tzs:
            zv = ZoneView(tz, t)
            for rule, state in active:
                result = rule.check(state, ctx, zv)
                if result is not None:
                    blocked = True
                    if result[0] > nxt:
                        nxt = result[0]
                    if rule.id not in failed:
                        failed[rule.id] = rule.applied(result[1])
        if not blocked:
            if t != t0 and not margin:
                # a deferral needs no send_before, and without a margin any lawful instant will do
                return Defer(EPOCH + timedelta(microseconds=t), tuple(failed.values()))
            end, end_rule, why = lawful_until(active, ctx, tzs, t)
            if end == NEVER or end - margin > t:
                if t != t0:
                    return Defer(EPOCH + timedelta(microseconds=t), tuple(failed.values()))
                if end == NEVER:
                    return Allow(tuple(rule.satisfied for rule, _ in active))
                until = EPOCH + timedelta(microseconds=end - margin)
                bound = AppliedRule(SEND_BEFORE_RULE, SEND_BEFORE_SOURCE,
                                    f"send before {until.isoformat()}: {end_rule}, {why}")
                return Allow((*(rule.satisfied for rule, _ in active), bound), send_before=until)
            # Lawful, but for less than the safety margin: a provider request could not leave in time.
            failed.setdefault(SEND_BEFORE_RULE, AppliedRule(
                SEND_BEFORE_RULE, SEND_BEFORE_SOURCE,
                f"less than {policy.send_margin} before {end_rule}: {why}",
            ))
            if end_rule == EXPIRES_RULE:
                # Nothing after the request's end is lawful: the earliest "instant" is its expiry.
                expiry = AppliedRule(EXPIRES_RULE, SEND_BEFORE_SOURCE, why)
                return Defer(EPOCH + timedelta(microseconds=max(t, end)), (*failed.values(), expiry))
            t = max(end, t + 1)
            continue
        t = nxt if nxt > t else t + 1
    reasons = tuple(failed.values()) + (
        AppliedRule("core.horizon", CORE_SOURCE,
                    f"no instant satisfies every rule within {policy.horizon_days} days"),
    )
    return Deny(reasons)


def _first(item: tuple[int, LedgerEntry]) -> int:
    return item[0]
