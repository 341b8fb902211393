"""Email pure parts: unsubscribe tokens, SendGrid answers, signature checks, settings."""

from __future__ import annotations

import base64
import time

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from services.email.settings import Settings
from services.email.tokens import UnsubscribeTokens
from services.email.webhooks import x_message_id
from shared.channels.models import advances
from shared.events.contracts import STATUS_RANK
from shared.providers.base import Ambiguous, Rejected, Retryable
from shared.providers.sendgrid import EventWebhookVerifier, classify_mail_response


def test_unsubscribe_tokens_round_trip_and_refuse_forgeries() -> None:
    tokens = UnsubscribeTokens("k1")
    token = tokens.sign("d-123")
    assert tokens.verify(token) == "d-123"
    assert UnsubscribeTokens("k2").verify(token) is None
    forged = base64.urlsafe_b64encode(b"d-124").rstrip(b"=").decode() + "." + token.split(".")[1]
    for bad in (forged, "", ".", "d-123", token + "x", "!!!.???"):
        assert tokens.verify(bad) is None


def test_sendgrid_answers_are_classified_once() -> None:
    accepted = classify_mail_response(202, {"X-Message-Id": "abc"}, b"")
    assert (accepted.provider_id, accepted.status) == ("abc", "accepted")
    with pytest.raises(Rejected) as rejected:
        classify_mail_response(400, {}, b'{"errors":[{"message":"Does not contain a valid address.",'
                                        b'"field":"personalizations.0.to.0.email"}]}')
    assert rejected.value.code == "400" and "valid address" in rejected.value.message
    with pytest.raises(Retryable) as limited:
        classify_mail_response(429, {"Retry-After": "2"}, b'{"errors":[{"message":"too many requests"}]}')
    assert limited.value.retry_after == 2.0
    for status in (500, 502, 504):
        with pytest.raises(Ambiguous):
            classify_mail_response(status, {}, b"")
    with pytest.raises(Ambiguous):
        classify_mail_response(202, {}, b"")  # accepted, but we cannot tell which message it is


def test_event_webhook_signature_and_age() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    public = base64.b64encode(key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).decode()
    verifier = EventWebhookVerifier(public, max_age_s=600)
    body = b'[{"event":"delivered"}]'

    def sign(ts: str, payload: bytes) -> str:
        return base64.b64encode(key.sign(ts.encode() + payload, ec.ECDSA(hashes.SHA256()))).decode()

    now = str(int(time.time()))
    assert verifier.verify(body, sign(now, body), now)
    assert not verifier.verify(body + b" ", sign(now, body), now)
    assert not verifier.verify(body, sign(now, body), None) and not verifier.verify(body, None, now)
    assert not verifier.verify(body, "not base64!", now)
    old = str(int(time.time()) - 601)
    assert not verifier.verify(body, sign(old, body), old)


def test_email_statuses_only_move_forward() -> None:
    assert advances("delivered", "opened") and advances("opened", "clicked") and advances("clicked", "failed")
    assert not advances("clicked", "opened") and not advances("bounced", "delivered")
    assert advances("accepted", "bounced") and not advances("bounced", "opened")
    assert x_message_id("abc.filterdrecv-1.0") == "abc"


def test_a_spam_report_after_delivery_is_reported_but_the_delivery_still_counts() -> None:
    # One order of statuses: the channel reports every final outcome once (the orchestrator suppresses
    # on it), and the orchestrator's dispatch keeps the furthest the contact got.
    assert advances("delivered", "failed") and advances("clicked", "bounced")
    assert STATUS_RANK["failed"] < STATUS_RANK["delivered"] < STATUS_RANK["clicked"]
    assert advances("unknown", "sent") and not advances("sent", "unknown")


def test_production_refuses_development_secrets() -> None:
    with pytest.raises(ValueError, match="CADENCIA_EMAIL_UNSUBSCRIBE__SECRET"):
        Settings(env="production", api_keys="admin:k", sendgrid={"api_key": "SG.real"})
    with pytest.raises(ValueError, match="SENDGRID_API_BASE_URL.*CADENCIA_ORCHESTRATOR_API_KEY.*PUBLIC_URL"):
        Settings(
            env="production", api_keys="admin:k",
            sendgrid={"api_key": "SG.real", "webhook_public_key": "MFkw"}, unsubscribe={"secret": "s3cret"},
        )
    settings = Settings(
        env="production", api_keys="admin:k",
        sendgrid={"api_key": "SG.real", "webhook_public_key": "MFkw", "base_url": "https://api.sendgrid.com"},
        unsubscribe={"secret": "s3cret"}, orchestrator_api_key="viewer-k", public_url="https://mail.example.com",
    )
    assert settings.port == 8002 and settings.consumer_group == "cadencia-email"
