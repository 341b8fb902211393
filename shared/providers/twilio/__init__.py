"""Twilio: the Messages and Calls API clients, ``X-Twilio-Signature`` verification and its error codes."""

from shared.providers.twilio.client import TwilioCalls, TwilioMessages
from shared.providers.twilio.errors import (
    INVALID_TO_NUMBER,
    OPTED_OUT,
    TOO_MANY_REQUESTS,
    WHATSAPP_WINDOW_CLOSED,
    classify_response,
)
from shared.providers.twilio.signature import SIGNATURE_HEADER, TwilioSignature, verify_twilio_form

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
    "verify_twilio_form",
]
