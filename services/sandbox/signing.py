"""Signatures exactly as the providers compute them.

Twilio: ``X-Twilio-Signature`` = base64(HMAC-SHA1(auth token, URL + each param name and value, names
sorted)). SendGrid: ``X-Twilio-Email-Event-Webhook-Signature`` = base64(DER ECDSA P-256/SHA-256 over
timestamp + raw body); the public key is published as base64 DER SubjectPublicKeyInfo.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping, Sequence

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

TWILIO_SIGNATURE_HEADER = "X-Twilio-Signature"
SENDGRID_SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
SENDGRID_TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"

_P256_ORDER = int("FFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551", 16)


def twilio_signature(auth_token: bytes, url: str, params: Mapping[str, str | Sequence[str]]) -> str:
    parts = [url]
    for name in sorted(params):
        value = params[name]
        values = [value] if isinstance(value, str) else sorted(set(value))
        for item in values:
            parts.append(name)
            parts.append(item)
    digest = hmac.new(auth_token, "".join(parts).encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def load_private_key(configured: str, deterministic_seed: str | None) -> ec.EllipticCurvePrivateKey:
    """A configured PEM/base64-DER key, else one derived from ``deterministic_seed``, else a fresh key."""
    configured = configured.strip()
    if configured:
        if configured.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(configured.encode(), password=None)
        else:
            key = serialization.load_der_private_key(base64.b64decode(configured), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
            raise ValueError("the SendGrid event webhook key must be an EC P-256 private key")
        return key
    if deterministic_seed is not None:
        scalar = int.from_bytes(hashlib.sha256(deterministic_seed.encode()).digest()) % (_P256_ORDER - 1) + 1
        return ec.derive_private_key(scalar, ec.SECP256R1())
    return ec.generate_private_key(ec.SECP256R1())


class EventWebhookSigner:
    def __init__(self, private_key: ec.EllipticCurvePrivateKey) -> None:
        self._key = private_key
        der = private_key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        #: What SendGrid shows under Mail Settings → Signed Event Webhook (and returns from its API).
        self.public_key_b64 = base64.b64encode(der).decode()

    def sign(self, timestamp: str, body: bytes) -> str:
        signature = self._key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
        return base64.b64encode(signature).decode()
