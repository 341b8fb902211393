"""Rule types by the ``type`` a pack's spec names, and :func:`compile_rule`."""

from __future__ import annotations

from typing import Any

from services.orchestrator.policy.deny_rules import (
    AuthorizedChannelsRule,
    CeaseRule,
    OptOutRule,
)
from services.orchestrator.policy.rules import (
    AfterConversationRule,
    CapRule,
    HoursRule,
    Rule,
    SingleChannelRule,
)

RULE_TYPES: dict[str, type[Rule]] = {
    "hours": HoursRule,
    "cap": CapRule,
    "after_conversation": AfterConversationRule,
    "single_channel": SingleChannelRule,
    "opt_out": OptOutRule,
    "cease": CeaseRule,
    "authorized_channels": AuthorizedChannelsRule,
}


def compile_rule(spec: dict[str, Any]) -> Rule:
    if "id" not in spec:
        raise ValueError(f"rule without id: {spec!r}")
    kind = spec.get("type")
    if kind not in RULE_TYPES:
        raise ValueError(f"rule {spec['id']}: unknown type {kind!r} (known: {', '.join(RULE_TYPES)})")
    return RULE_TYPES[kind](spec)
