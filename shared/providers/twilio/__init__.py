"""Twilio: the Messages and Calls API clients, ``X-Twilio-Signature`` verification and its error codes."""

from shared.providers.twilio.client import (
    INVALID_TO_NUMBER,
    OPTED_OUT,
    SIGNATURE_HEADER,
    TOO_MANY_REQUESTS,
    WHATSAPP_WINDOW_CLOSED,
    TwilioCalls,
    TwilioMessages,
    TwilioSignature,
    classify_response,
    parse_retry_after,
)

__all__ = [
    "INVALID_TO_NUMBER",
    "OPTED_OUT",
    "SIGNATURE_HEADER",
    "TOO_MANY_REQUESTS",
    "WHATSAPP_WINDOW_CLOSED",
    "TwilioCalls",
    "TwilioMessages",
    "TwilioSignature",
    "classify_response",
    "parse_retry_after",
]
