"""Sandbox settings: provider credentials (the conventional env vars), webhook targets, timing and faults."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from services.sandbox.faults import Faults
from shared.config import SendGridSettings, ServiceSettings, TwilioSettings


class InboundUrls(BaseModel):
    """Where inbound traffic goes when a request does not name a URL (the numbers' configured webhooks)."""

    sms: str = ""
    whatsapp: str = ""
    voice: str = ""


class Timing(BaseModel):
    """Provider-time delays (seconds, divided by ``speed_factor``) between lifecycle steps."""

    message_sent_after: float = 0.5
    message_delivered_after: float = 1.5
    message_read_after: float = 5.0
    reply_after: float = 30.0
    call_ringing_after: float = 1.0
    call_answered_after: float = 4.0
    email_processed_after: float = 0.2
    email_delivered_after: float = 1.0
    email_engagement_after: float = 30.0
    #: A WhatsApp customer-service window lasts this long after the user's last inbound message.
    whatsapp_window: float = 24 * 3600.0


class Settings(ServiceSettings):
    service_name: ClassVar[str] = "sandbox"

    port: int = 8090
    #: SendGrid accepts up to 30 MB per send; the sandbox answers 413 itself, in SendGrid's format.
    max_body_bytes: int = 32 * 1024 * 1024
    twilio: TwilioSettings = Field(default_factory=TwilioSettings)
    sendgrid: SendGridSettings = Field(default_factory=SendGridSettings)

    #: 1000 makes "reply after 600 s" happen after 0.6 s of real time.
    speed_factor: float = Field(default=1.0, gt=0)
    timing: Timing = Field(default_factory=Timing)
    inbound: InboundUrls = Field(default_factory=InboundUrls)
    #: SendGrid's event webhook target (also ``PUT /sandbox/sendgrid/webhook``).
    sendgrid_webhook_url: str = ""
    #: PEM or base64 PKCS#8 DER P-256 key signing the event webhook; empty: derived deterministically in
    #: development (so a receiver can pin the public key), generated at startup otherwise.
    sendgrid_webhook_private_key: SecretStr = SecretStr("")
    #: The number a Messaging Service sends from (replies to service-sent messages go to it).
    messaging_service_number: str = "+15005550006"
    faults: Faults = Field(default_factory=Faults)
    #: Bound on every recorded list (requests, callbacks, messages, calls).
    max_records: int = Field(default=100_000, gt=0)
    callback_concurrency: int = Field(default=64, gt=0)
    #: Extra attempts after a connection error or 5xx from a receiver.
    callback_retries: int = Field(default=2, ge=0)
    callback_timeout_s: float = 10.0

    model_config = SettingsConfigDict(env_prefix="CADENCIA_SANDBOX_", env_nested_delimiter="__", extra="ignore")
