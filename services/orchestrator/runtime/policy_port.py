"""The runtime's view of the policy engine: build its inputs from the ledger, ask, get a decision."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from services.orchestrator.policy import Policy, load_policy
from services.orchestrator.policy import evaluate as engine
from services.orchestrator.policy.models import (
    KINDS,
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
)

__all__ = [
    "AccountState", "Allow", "AppliedRule", "DebtorContext", "Decision", "Defer", "Deny", "LedgerEntry",
    "ProposedContact", "StrategyLimits", "Suppression", "evaluate", "jurisdictions", "load", "policy_kind",
]


def load(extra_dirs: list[str] | None, send_margin_s: float = 0.0) -> Policy:
    return load_policy(extra_dirs=extra_dirs or (), send_margin=timedelta(seconds=send_margin_s))


def jurisdictions(policy: Policy) -> set[str]:
    """Jurisdiction codes the loaded packs know (``default`` is the fallback, not a jurisdiction)."""
    return {str(code).upper() for code in policy.specs if str(code).lower() != "default"}


def policy_kind(kind: str) -> str:
    """Kinds the engine does not know are bound by the rules of ordinary collection contacts."""
    return kind if kind in KINDS else "collection"


def evaluate(
    policy: Policy,
    *,
    debtor: DebtorContext,
    account: AccountState,
    ledger: Sequence[LedgerEntry],
    suppressions: Sequence[Suppression],
    contact: ProposedContact,
    limits: StrategyLimits,
    now: datetime,
) -> Decision:
    return engine(debtor, account, ledger, contact, policy, now, suppressions=suppressions, limits=limits)


def limits_of(min_gap: timedelta | None, daily: dict[str, int], weekly: dict[str, int]) -> StrategyLimits:
    return StrategyLimits(min_gap=min_gap, daily_caps=tuple(sorted(daily.items())),
                          weekly_caps=tuple(sorted(weekly.items())))


def rule_ids(rules: Sequence[AppliedRule]) -> list[str]:
    return [r.id for r in rules]


def explain(rules: Sequence[AppliedRule]) -> str:
    """The rules that blocked, for a status reason (the ones that merely held are left out)."""
    blocking = [f"{r.id}: {r.detail}" for r in rules if not r.detail.startswith("holds")]
    return "; ".join(blocking or [r.id for r in rules])
