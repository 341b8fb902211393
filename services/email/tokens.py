"""The one-click unsubscribe link's token: it names the dispatch and cannot be forged."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

UNSUBSCRIBE_PATH = "/unsubscribe/{token}"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class UnsubscribeTokens:
    """``<dispatch id>.<HMAC-SHA256>`` (both base64url): the link names the dispatch and cannot be forged."""

    def __init__(self, secret: str) -> None:
        self._key = secret.encode()

    def _mac(self, dispatch_id: bytes) -> bytes:
        return hmac.new(self._key, b"unsubscribe:" + dispatch_id, hashlib.sha256).digest()[:18]

    def sign(self, dispatch_id: str) -> str:
        raw = dispatch_id.encode()
        return f"{_b64(raw)}.{_b64(self._mac(raw))}"

    def verify(self, token: str) -> str | None:
        """The dispatch id of a genuine token; ``None`` otherwise."""
        encoded, _, mac = token.partition(".")
        try:
            raw, given = _unb64(encoded), _unb64(mac)
            dispatch_id = raw.decode()
        except (binascii.Error, ValueError):
            return None
        if not raw or not hmac.compare_digest(given, self._mac(raw)):
            return None
        return dispatch_id


def unsubscribe_url(public_url: str, token: str) -> str:
    return f"{public_url.rstrip('/')}/unsubscribe/{token}"
