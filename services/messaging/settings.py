"""Settings sections of the Twilio message channels (nested in the SMS and WhatsApp ``Settings``)."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel, Field

from shared.channels.settings import ChannelServiceSettings
from shared.config import TwilioSettings


class SenderSettings(BaseModel):
    """Who sends: a number (``from_number``) or a Twilio Messaging Service (``messaging_service_sid``).

    ``mps`` is the sender's messages per second (Twilio: 1 for a long code, more for toll-free,
    short codes and messaging services); ``burst`` how many may leave back to back after a pause.
    """

    from_number: str = "+15005550006"
    messaging_service_sid: str = ""
    mps: float = Field(default=10.0, gt=0)
    burst: int = Field(default=1, ge=1)
    #: Per-sender overrides of ``mps`` (a number or a Messaging Service SID → messages per second).
    mps_by_sender: dict[str, float] = Field(default_factory=dict)

    @property
    def key(self) -> str:
        """The rate-limit key: the Messaging Service when configured, else the number."""
        return self.messaging_service_sid or self.from_number


DEFAULT_HELP_TEXT: dict[str, str] = {
    "es": (
        "Para dudas sobre tu cuenta llama al teléfono de tu estado de cuenta. "
        "Responde BAJA para no recibir más mensajes."
    ),
    "en": "For help with your account, call the number on your statement. Reply STOP to opt out.",
}


KEYWORDS_FILE = Path(__file__).with_name("reply_keywords.yaml")


@lru_cache(maxsize=1)
def shipped_keywords() -> dict[str, dict[str, list[str]]]:
    """The shipped reply keywords per language (``reply_keywords.yaml``)."""
    with KEYWORDS_FILE.open(encoding="utf-8") as fh:
        data: dict[str, dict[str, list[str]]] = yaml.safe_load(fh)
    return data


def _every_language(kind: str) -> Callable[[], list[str]]:
    def words() -> list[str]:
        return list(dict.fromkeys(w for lists in shipped_keywords().values() for w in lists.get(kind, [])))

    return words


class KeywordSettings(BaseModel):
    """Reply keywords, matched case-, accent- and punctuation-insensitively; the defaults are the
    shipped per-language lists (``reply_keywords.yaml``) of every language.

    Opt-out keywords also match at the start or end of a short reply (``"BAJA por favor"``, ``"stop
    please"``), and opt-out phrases anywhere (``"ya no me escriban"``): an opt-out must be honoured in
    any reasonable form.
    """

    opt_out: list[str] = Field(default_factory=_every_language("opt_out"))
    opt_out_phrases: list[str] = Field(default_factory=_every_language("opt_out_phrases"))
    #: A reply of at most this many words counts as an opt-out when an opt-out keyword starts or ends it.
    short_reply_words: int = Field(default=6, ge=1)
    opt_in: list[str] = Field(default_factory=_every_language("opt_in"))
    help: list[str] = Field(default_factory=_every_language("help"))
    promise_to_pay: list[str] = Field(default_factory=_every_language("promise_to_pay"))
    #: Help answer per language (``es``, ``en``) or full locale (``es-CO``); the full locale wins.
    help_text: dict[str, str] = Field(default_factory=lambda: dict(DEFAULT_HELP_TEXT))
    default_language: str = "es"


class MessageServiceSettings(ChannelServiceSettings):
    """Settings of a Twilio message channel service (SMS, WhatsApp); each service subclasses it with its
    ``service_name``, ``env_prefix`` and port."""

    twilio: TwilioSettings = Field(default_factory=TwilioSettings)
    sender: SenderSettings = Field(default_factory=SenderSettings)
    keywords: KeywordSettings = Field(default_factory=KeywordSettings)
