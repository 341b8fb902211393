"""The runtime's vocabulary: how dispatch statuses count, and the rule ids it decides by."""

from __future__ import annotations

from shared.events.contracts import STATUS_RANK as STATUS_RANK  # the one order of delivery statuses

FAILED = frozenset({"failed", "undelivered", "bounced"})
#: Calls that reached no one: retried on voice, then the contact falls back to the next channel.
UNANSWERED = frozenset({"no_answer", "busy"})
DELIVERED = frozenset({"delivered", "read", "opened", "clicked", "voicemail", "conversation", "agent_connected",
                       "abandoned"})
#: Kinds the law allows past an opt-out or a cease: the policy decides them, not the strategy.
LEGAL_NOTICES = frozenset({"opt_out_confirmation", "cease_notice", "dispute_ack"})
#: Kinds that answer a promise the debtor just made (its confirmation, the self-service link).
PROMISE_ANSWERS = frozenset({"promise_confirmation", "self_service_link"})
#: A failed delivery's neutral reason (``DeliveryUpdated.reason``) → the suppression it records.
SUPPRESSING_REASONS: dict[str, str] = {"invalid_address": "invalid_number", "opted_out": "opt_out"}
ACCOUNT_RULE = "account.state"
PROMISE_RULE = "core.promise_to_pay"
PAUSE_RULES = frozenset({ACCOUNT_RULE, PROMISE_RULE, "core.account_status"})
NOT_BEFORE_RULE = "request.not_before"

SOURCE = "cadencia/orchestrator"
#: Inbox consumers: one per kind of input, so an event id is applied once per kind.
INTAKE = "orchestrator.intake"
ACCOUNTS = "orchestrator.accounts"
OUTCOMES = "orchestrator.outcomes"


def ledger_outcome(channel: str, status: str) -> str:
    """A dispatch's delivery status in the policy's vocabulary (what counts toward caps)."""
    if channel == "voice":
        if status in ("agent_connected", "abandoned"):
            return "conversation"  # a person answered: the policy counts it as a conversation
        if status in ("conversation", "voicemail", "no_answer", "busy"):
            return status
        if status in FAILED:
            return "not_connected"
        return "sent"
    if status in FAILED:
        return "failed"
    if status in DELIVERED:
        return "delivered"
    return "sent"
