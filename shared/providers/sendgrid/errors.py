"""SendGrid's answers to a mail send as the provider-neutral outcomes (:mod:`shared.providers.base`).

SendGrid's refusals carry no code a channel acts on (bounces and spam reports arrive as events), so
no error maps to a neutral ``DeliveryUpdated.reason``.
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from shared.events.contracts import DeliveryReason
from shared.providers.base import Accepted, Ambiguous, Rejected, Retryable
from shared.providers.http import retry_after

#: SendGrid error code → neutral reason: none today.
REASONS: dict[str, DeliveryReason] = {}


def _error_message(body: bytes, reason: str) -> tuple[str | None, str]:
    """SendGrid's ``{"errors": [{"message", "field", "help"}]}`` as (first field, joined messages)."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, body[:500].decode("utf-8", "replace") or reason
    errors = parsed.get("errors") if isinstance(parsed, dict) else None
    if not isinstance(errors, list) or not errors:
        return None, reason or str(parsed)[:500]
    messages, field = [], None
    for error in errors:
        if isinstance(error, dict):
            messages.append(str(error.get("message") or ""))
            field = field or (str(error["field"]) if error.get("field") else None)
    return field, "; ".join(m for m in messages if m) or reason


def classify_mail_response(status: int, headers: Mapping[str, str], body: bytes, reason: str = "") -> Accepted:
    """The outcome of a mail send; raises ``Rejected``, ``Retryable`` or ``Ambiguous``."""
    if status in (200, 202):
        message_id = headers.get("X-Message-Id") or headers.get("x-message-id")
        if not message_id:
            raise Ambiguous("accepted without an X-Message-Id", status=status)
        return Accepted(provider_id=message_id, status="accepted")
    field, message = _error_message(body, reason)
    wait = retry_after(headers)
    if status == 429:
        raise Retryable(message, status=status, code="429", retry_after=wait)
    if status in (401, 503):
        # Nothing was processed; a 401 retried until the deadline survives a key rotation.
        raise Retryable(message, status=status, code=str(status), retry_after=wait)
    if 400 <= status < 500:
        raise Rejected(f"{field}: {message}" if field else message, status=status, code=str(status))
    raise Ambiguous(f"HTTP {status}: {message}", status=status, code=str(status))
