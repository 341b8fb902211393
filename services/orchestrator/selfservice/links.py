"""Signed self-service links: short enough for an SMS, bound to one debtor and account, expiring.

A token is 18 bytes, 24 characters of URL-safe base64:

* ``ref`` (9 bytes) — ``HMAC(secret, "ref", debtor, account)``, the same for every message of the
  account, so the page finds the account through a small lookup table instead of carrying its ids;
* ``expires`` (2 bytes) — the UTC day (days since 1970-01-01) after which the link is refused;
* ``mac`` (7 bytes) — ``HMAC(secret, ref, expires, debtor, account)``: changing any byte, or
  pointing a ref at another account, fails verification.

Nothing here reads a clock or a database; ``now`` and the ids are arguments.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import struct
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

REF_BYTES, EXPIRY_BYTES, MAC_BYTES = 9, 2, 7
TOKEN_BYTES = REF_BYTES + EXPIRY_BYTES + MAC_BYTES
TOKEN_CHARS = 24
EPOCH = date(1970, 1, 1)


class LinkError(Exception):
    """A token that is malformed, tampered with or expired; ``reason`` is ``invalid`` or ``expired``."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class LinkClaims:
    ref: str
    expires_on: date


def _mac(secret: bytes, *parts: bytes) -> bytes:
    return hmac.new(secret, b"\x00".join(parts), hashlib.sha256).digest()


def account_ref(secret: bytes, debtor_id: str, account_id: str) -> str:
    """The stable reference of one debtor's account (hex), the key of the link lookup table."""
    return _mac(secret, b"ref", debtor_id.encode(), account_id.encode())[:REF_BYTES].hex()


def sign(secret: bytes, debtor_id: str, account_id: str, expires_on: date) -> str:
    ref = bytes.fromhex(account_ref(secret, debtor_id, account_id))
    expiry = struct.pack(">H", (expires_on - EPOCH).days)
    mac = _mac(secret, b"link", ref, expiry, debtor_id.encode(), account_id.encode())[:MAC_BYTES]
    return base64.urlsafe_b64encode(ref + expiry + mac).decode().rstrip("=")


def expiry_for(now: datetime, ttl_days: int) -> date:
    """The last UTC day a link made ``now`` is valid: at least ``ttl_days`` full days."""
    return (now.astimezone(UTC) + timedelta(days=ttl_days)).date()


def decode(token: str) -> LinkClaims:
    """Parse a token's fields without trusting them yet (the ids come from the lookup table)."""
    if len(token) != TOKEN_CHARS:
        raise LinkError("invalid", "the link is not a Cadencia self-service link")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (ValueError, TypeError) as exc:
        raise LinkError("invalid", "the link is not a Cadencia self-service link") from exc
    if len(raw) != TOKEN_BYTES:
        raise LinkError("invalid", "the link is not a Cadencia self-service link")
    (days,) = struct.unpack(">H", raw[REF_BYTES:REF_BYTES + EXPIRY_BYTES])
    return LinkClaims(ref=raw[:REF_BYTES].hex(), expires_on=EPOCH + timedelta(days=days))


def verify(secret: bytes, token: str, debtor_id: str, account_id: str, now: datetime) -> LinkClaims:
    """Check the token's signature for this debtor and account, then its expiry."""
    claims = decode(token)
    expected = sign(secret, debtor_id, account_id, claims.expires_on)
    if not hmac.compare_digest(expected, token):
        raise LinkError("invalid", "the link's signature does not match")
    if now.astimezone(UTC).date() > claims.expires_on:
        raise LinkError("expired", f"the link expired on {claims.expires_on.isoformat()}")
    return claims


def link_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/s/{token}"
