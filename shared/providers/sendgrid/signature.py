"""SendGrid's signed event webhook: ECDSA P-256/SHA-256 over the timestamp and the raw body."""

from __future__ import annotations

import time
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from sendgrid.helpers.eventwebhook import EventWebhook

SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"


class EventWebhookVerifier:
    """Verifies SendGrid's signed event webhook: ECDSA P-256/SHA-256 over timestamp + raw body.

    ``max_age_s`` refuses replays of old (validly signed) requests, and timestamps that far ahead.
    """

    def __init__(self, public_key: str, *, max_age_s: float = 600.0) -> None:
        self._webhook = EventWebhook(public_key.strip())
        self.max_age_s = max_age_s

    def verify(self, body: bytes, signature: str | None, timestamp: str | None, now: float | None = None) -> bool:
        return self.refusal(body, signature, timestamp, now) is None

    def refusal(self, body: bytes, signature: str | None, timestamp: str | None,
                now: float | None = None) -> str | None:
        """Why the request is refused: ``forged`` (unsigned, or not signed with SendGrid's key) or
        ``replayed`` (signed by SendGrid, but longer ago than ``max_age_s``); None when it is good."""
        if not signature or not timestamp:
            return "forged"
        try:
            sent_at = float(timestamp)
            payload = body.decode("utf-8")
            valid: Any = self._webhook.verify_signature(payload, signature, timestamp)
        except (ValueError, UnicodeDecodeError, UnsupportedAlgorithm):  # bad base64 or DER: not signed by them
            return "forged"
        if not valid:
            return "forged"
        if abs((time.time() if now is None else now) - sent_at) > self.max_age_s:
            return "replayed"
        return None
