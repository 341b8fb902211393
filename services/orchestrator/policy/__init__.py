"""Contact policy engine: may this contact happen now, and if not, exactly when?

The orchestrator builds the inputs from its ledger and calls ``evaluate``::

    policy = load_policy()                       # once, at start-up
    decision = evaluate(debtor, account, ledger, contact, policy, suppressions=..., limits=...)
"""

from services.orchestrator.policy.engine import candidate_zones, evaluate
from services.orchestrator.policy.models import (
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
from services.orchestrator.policy.packs import CompiledPack, Policy, load_policy

__all__ = [
    "AccountState",
    "Allow",
    "AppliedRule",
    "CompiledPack",
    "DebtorContext",
    "Decision",
    "Defer",
    "Deny",
    "LedgerEntry",
    "Policy",
    "ProposedContact",
    "StrategyLimits",
    "Suppression",
    "candidate_zones",
    "evaluate",
    "load_policy",
]
