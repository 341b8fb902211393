"""Classifying a debtor's reply: opt-out, opt-in, help, promise to pay, or a free-text reply.

Matching folds case and accents (``"Bájá"`` → ``BAJA``), maps Cyrillic and Greek letters that look
like Latin ones (a reply typed on another keyboard layout, or written to slip past a filter), and
ignores surrounding whitespace and punctuation. An opt-out is recognised as a whole-message keyword,
as a keyword starting or ending a short reply (``"stop please"``, ``"BAJA por favor"``) or as a phrase
anywhere (``"ya no me escriban"``, ``"no más mensajes"``). Anything else is a ``reply``: recorded,
never dropped.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

from services.messaging.settings import KeywordSettings
from shared import stated_limits

ReplyKind = Literal["opt_out", "opt_in", "help", "promise_to_pay", "reply"]

#: Letters that render like Latin capitals, folded to them before matching.
_CONFUSABLES = str.maketrans(
    {
        # Cyrillic
        "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P", "С": "C", "Т": "T",
        "Х": "X", "У": "Y", "І": "I", "Ј": "J", "Ѕ": "S",
        # Greek
        "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N", "Ο": "O",
        "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
    }
)
_EDGES = re.compile(r"^[\W_]+|[\W_]+$", re.UNICODE)
_SPACES = re.compile(r"\s+")
_TWILIO_OPT_OUT_TYPES: dict[str, ReplyKind] = {"STOP": "opt_out", "START": "opt_in", "HELP": "help"}
_WORD_BREAKS = re.compile(r"[\W_]+", re.UNICODE)


def fold(text: str) -> str:
    """Upper case, without accents, confusables mapped, edge punctuation stripped, spaces collapsed."""
    upper = unicodedata.normalize("NFKC", text).upper().translate(_CONFUSABLES)
    decomposed = unicodedata.normalize("NFKD", upper)
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _SPACES.sub(" ", _EDGES.sub("", bare.strip()))


def reply_words(text: str) -> tuple[str, ...]:
    """The folded words of a reply, punctuation dropped (``"¡No más mensajes!"`` → ``NO MAS MENSAJES``)."""
    return tuple(w for w in _WORD_BREAKS.split(fold(text)) if w)


class KeywordClassifier:
    """``classify(text)`` → the reply kind, per the configured keyword lists."""

    def __init__(self, settings: KeywordSettings) -> None:
        self.settings = settings
        self._opt_out = frozenset(reply_words(k) for k in settings.opt_out)
        self._phrases = tuple(frozenset(reply_words(p) for p in settings.opt_out_phrases if reply_words(p)))
        self._exact: dict[str, ReplyKind] = {}
        for kind, words in (
            ("promise_to_pay", settings.promise_to_pay),
            ("help", settings.help),
            ("opt_in", settings.opt_in),
            ("opt_out", settings.opt_out),
        ):
            for word in words:
                self._exact[fold(word)] = kind  # type: ignore[assignment]

    def classify(self, text: str | None, opt_out_type: str | None = None) -> ReplyKind:
        """The reply's kind; ``opt_out_type`` is Twilio's own reading of it (``OptOutType`` of an
        inbound webhook with Advanced Opt-Out), which wins: Twilio already blocks a number that sent STOP."""
        provider = _TWILIO_OPT_OUT_TYPES.get((opt_out_type or "").strip().upper())
        if provider is not None:
            return provider
        folded = fold(text or "")
        if not folded:
            return "reply"
        exact = self._exact.get(folded)
        if exact is not None:
            return exact
        if any(limit.get("start") or limit.get("end") or limit.get("days") for limit in stated_limits.from_text(text)):
            # "no me llamen antes de las 10" limits the times (12 CFR 1006.6(b)(1)): the orchestrator
            # records it from the reply; it is not an opt-out of the whole channel
            return "reply"
        if self._is_opt_out(reply_words(folded)):
            return "opt_out"
        return "reply"

    def _is_opt_out(self, found: tuple[str, ...]) -> bool:
        if not found:
            return False
        if len(found) <= self.settings.short_reply_words:
            for keyword in self._opt_out:
                n = len(keyword)
                if found[:n] == keyword or found[-n:] == keyword:  # "BAJA por favor", "please stop"
                    return True
        for phrase in self._phrases:
            n = len(phrase)
            if any(found[i:i + n] == phrase for i in range(len(found) - n + 1)):
                return True
        return False

    def help_text(self, locale: str | None) -> str:
        """The help answer in the debtor's locale (``es-CO`` → ``es-CO`` or ``es``), else the default language."""
        texts = self.settings.help_text
        locale = (locale or "").replace("_", "-")
        for candidate in (locale, locale.split("-")[0].lower(), self.settings.default_language):
            if candidate and candidate in texts:
                return texts[candidate]
        return next(iter(texts.values()), "")
