"""Twilio's answers as the provider-neutral outcomes (:mod:`shared.providers.base`), and the error
codes a channel acts on translated to the neutral reasons of ``DeliveryUpdated``."""

from __future__ import annotations

from collections.abc import Mapping

import orjson

from shared.events.contracts import DeliveryReason
from shared.providers.base import Accepted, Ambiguous, Rejected, Retryable
from shared.providers.http import retry_after

#: Twilio error codes the channel services act on.
INVALID_TO_NUMBER = "21211"
OPTED_OUT = "21610"
WHATSAPP_WINDOW_CLOSED = "63016"
TOO_MANY_REQUESTS = "20429"

#: Twilio error code → the neutral reason a channel reports in ``DeliveryUpdated.reason``.
REASONS: dict[str, DeliveryReason] = {
    INVALID_TO_NUMBER: "invalid_address",
    OPTED_OUT: "opted_out",
}


def _error_body(body: bytes, reason: str) -> tuple[str | None, str]:
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None, body[:500].decode("utf-8", "replace") or reason
    if not isinstance(parsed, dict):
        return None, str(parsed)[:500]
    code = parsed.get("code")
    return (str(code) if code is not None else None), str(parsed.get("message") or reason)


def classify_response(status: int, headers: Mapping[str, str], body: bytes, reason: str = "") -> Accepted:
    """The outcome of a Messages.json create; raises ``Rejected``, ``Retryable`` or ``Ambiguous``."""
    if status in (200, 201):
        try:
            parsed = orjson.loads(body)
            return Accepted(provider_id=str(parsed["sid"]), status=str(parsed.get("status") or "accepted"))
        except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
            raise Ambiguous(f"unreadable success response: {exc}", status=status) from exc
    code, message = _error_body(body, reason)
    wait = retry_after(headers)
    if status == 429:
        raise Retryable(message, status=status, code=code or TOO_MANY_REQUESTS, retry_after=wait)
    if status == 503:
        raise Retryable(message, status=status, code=code, retry_after=wait)
    if status == 401:
        # Credentials refused: nothing was processed; retrying until the deadline survives a rotation.
        raise Retryable(message, status=status, code=code)
    if 400 <= status < 500:
        raise Rejected(message, status=status, code=code or str(status))
    raise Ambiguous(f"HTTP {status}: {message}", status=status, code=code)
