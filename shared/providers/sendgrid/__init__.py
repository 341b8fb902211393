"""SendGrid: the v3 mail send client, the signed event webhook's verification and its error mapping."""

from shared.providers.sendgrid.client import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    EventWebhookVerifier,
    SendGridMail,
    classify_mail_response,
    fetch_sandbox_public_key,
)

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "EventWebhookVerifier",
    "SendGridMail",
    "classify_mail_response",
    "fetch_sandbox_public_key",
]
