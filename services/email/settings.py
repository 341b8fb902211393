"""Settings of the email service (``CADENCIA_EMAIL_*``, nested with ``__``; ``SENDGRID_*`` for the provider)."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import SettingsConfigDict

from shared.channels.settings import ChannelServiceSettings
from shared.config import SendGridSettings

DEV_UNSUBSCRIBE_SECRET = "dev-unsubscribe-secret"


class EmailSenderSettings(BaseModel):
    """Who sends, and how fast: SendGrid limits mail send requests per second per API key."""

    from_email: str = "cobranza@cadencia.example"
    from_name: str = "Cadencia"
    reply_to: str = ""
    reply_to_name: str = ""
    #: Mail send requests per second, and how many may leave back to back after a pause.
    rate: float = Field(default=10.0, gt=0)
    burst: int = Field(default=1, ge=1)


class UnsubscribeSettings(BaseModel):
    """The one-click unsubscribe link (RFC 8058) every email carries."""

    #: HMAC key of the link's token; the development default is refused in production.
    secret: SecretStr = SecretStr(DEV_UNSUBSCRIBE_SECRET)
    #: An address that unsubscribes by mail (``List-Unsubscribe: <mailto:...>``); empty: none.
    mailto: str = ""


class Settings(ChannelServiceSettings):
    service_name: ClassVar[str] = "email"
    model_config = SettingsConfigDict(env_prefix="CADENCIA_EMAIL_", env_nested_delimiter="__", extra="ignore")

    port: int = 8002
    sendgrid: SendGridSettings = Field(default_factory=SendGridSettings)
    sender: EmailSenderSettings = Field(default_factory=EmailSenderSettings)
    unsubscribe: UnsubscribeSettings = Field(default_factory=UnsubscribeSettings)
    #: Refuse event webhook requests whose signed timestamp is further than this from now (replays).
    webhook_max_age_s: float = Field(default=600.0, gt=0)

    def development_defaults_in_use(self) -> list[str]:
        bad = super().development_defaults_in_use()
        if self.unsubscribe.secret.get_secret_value() == DEV_UNSUBSCRIBE_SECRET:
            bad.append("CADENCIA_EMAIL_UNSUBSCRIBE__SECRET")
        if not self.sendgrid.webhook_public_key:
            # Only the sandbox publishes its key at a well-known path; SendGrid's must be configured.
            bad.append("SENDGRID_WEBHOOK_PUBLIC_KEY")
        return bad
