"""SendGrid: the v3 mail send client, the signed event webhook's verification and its error mapping."""

from shared.providers.sendgrid.client import SendGridMail, fetch_sandbox_public_key
from shared.providers.sendgrid.errors import classify_mail_response
from shared.providers.sendgrid.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, EventWebhookVerifier

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "EventWebhookVerifier",
    "SendGridMail",
    "classify_mail_response",
    "fetch_sandbox_public_key",
]
