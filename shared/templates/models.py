"""Value types of the template subsystem: limits, lint/validation findings, rendered messages."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shared.events.contracts import Channel

Severity = Literal["error", "warning", "info"]


class Limits(BaseModel):
    """Resource limits of one render; a template past any of them is refused or stopped."""

    model_config = ConfigDict(frozen=True)

    #: Characters of template source per field.
    max_source_chars: int = 20_000
    #: Characters of rendered output per field (also bounds strings built inside the template).
    max_output_chars: int = 50_000
    #: Wall-clock seconds one field may take to render.
    time_limit: float = 0.5
    #: Upper bound of ``range()`` inside templates.
    max_range: int = 10_000


DEFAULT_LIMITS = Limits()
#: The locale a template falls back to, and the one money and dates are written in when none is known.
DEFAULT_LOCALE = "es-MX"


class Finding(BaseModel):
    """One problem found on save or preview. Errors block publishing; warnings and infos do not."""

    model_config = ConfigDict(frozen=True)

    code: str
    severity: Severity
    message: str
    #: The content field (``body``, ``subject``, ``html``, ``ivr_prompts.1``...) or ``None`` for the whole.
    field: str | None = None
    line: int | None = None
    column: int | None = None


class SmsInfo(BaseModel):
    model_config = ConfigDict(frozen=True)

    encoding: Literal["GSM-7", "UCS-2"]
    units: int
    segments: int
    per_segment: int
    non_gsm: list[str] = Field(default_factory=list)


class RenderedMessage(BaseModel):
    """A template rendered for one recipient; only the fields of its channel are set."""

    model_config = ConfigDict(frozen=True)

    key: str
    version: int | None = None
    channel: Channel
    locale: str
    variant: str = "A"
    body: str | None = None
    subject: str | None = None
    text: str | None = None
    html: str | None = None
    content_sid: str | None = None
    #: Content API variables for WhatsApp templates outside the 24-hour window, rendered.
    content_variables: dict[str, str] | None = None
    voice_script: str | None = None
    voicemail_script: str | None = None
    ivr_prompts: dict[str, str] | None = None
    #: Encoding and segments of ``body`` for SMS.
    sms: SmsInfo | None = None
