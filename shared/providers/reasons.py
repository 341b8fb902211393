"""Provider error codes → the neutral reasons of ``DeliveryUpdated.reason``, per provider.

Channels call :func:`delivery_reason` when they report a failure, so the orchestrator decides on the
reason alone. It also reads delivery updates written before ``reason`` existed (they carry only the
provider and its code), which is why the orchestrator may call it too: the codes stay here.
"""

from __future__ import annotations

from collections.abc import Mapping

from shared.events.contracts import DeliveryReason
from shared.providers.sendgrid.errors import REASONS as SENDGRID_REASONS
from shared.providers.twilio.errors import REASONS as TWILIO_REASONS

REASONS: Mapping[str, Mapping[str, DeliveryReason]] = {"twilio": TWILIO_REASONS, "sendgrid": SENDGRID_REASONS}


def delivery_reason(provider: str, error_code: str | None) -> DeliveryReason | None:
    """The neutral reason of ``provider``'s ``error_code``; ``None`` when it has none (or no code)."""
    if not error_code:
        return None
    return REASONS.get(provider, {}).get(error_code)
