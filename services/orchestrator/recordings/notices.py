"""The recording notice of a jurisdiction, from the policy packs (pure).

A pack may carry ``recording_notice`` (``consent``, ``source``, ``text`` per language and, for a
country with all-party states, ``all_party_states`` and ``all_party_text``). The most specific pack
of the debtor's jurisdiction that has one wins (US-MA over US); without one, the default pack's.
"""

from __future__ import annotations

from typing import Any

DEFAULT_PACK = "default"


def _notice_spec(policy: Any, jurisdiction: str) -> dict[str, Any] | None:
    for pack_id in reversed(policy.chain(jurisdiction)):
        spec = policy.specs[pack_id].get("recording_notice")
        if spec:
            return dict(spec)
    default = policy.specs.get(DEFAULT_PACK, {}).get("recording_notice")
    return dict(default) if default else None


def recording_notice(policy: Any, jurisdiction: str, locale: str) -> str | None:
    """What a recorded call says first, in the debtor's language (``None`` when no pack has one)."""
    spec = _notice_spec(policy, jurisdiction or DEFAULT_PACK)
    if spec is None:
        return None
    language = "en" if locale.lower().startswith("en") else "es"
    subdivision = jurisdiction.upper().split("-", 1)[1] if "-" in jurisdiction else ""
    texts = spec.get("text") or {}
    if subdivision and subdivision in (spec.get("all_party_states") or []):
        texts = spec.get("all_party_text") or texts
    text = texts.get(language) or next(iter(texts.values()), None)
    return str(text) if text else None
