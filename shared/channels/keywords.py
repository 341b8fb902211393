"""Classifying a debtor's reply: opt-out, opt-in, help, promise to pay, or a free-text reply.

Matching folds case and accents (``"Bájá"`` → ``BAJA``), maps Cyrillic and Greek letters that look
like Latin ones (a reply typed on another keyboard layout, or written to slip past a filter), and
ignores surrounding whitespace and punctuation.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

from shared.channels.settings import KeywordSettings

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


def fold(text: str) -> str:
    """Upper case, without accents, confusables mapped, edge punctuation stripped, spaces collapsed."""
    upper = unicodedata.normalize("NFKC", text).upper().translate(_CONFUSABLES)
    decomposed = unicodedata.normalize("NFKD", upper)
    bare = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _SPACES.sub(" ", _EDGES.sub("", bare.strip()))


class KeywordClassifier:
    """``classify(text)`` → the reply kind, per the configured keyword lists."""

    def __init__(self, settings: KeywordSettings) -> None:
        self.settings = settings
        self._opt_out = frozenset(fold(k) for k in settings.opt_out)
        self._exact: dict[str, ReplyKind] = {}
        for kind, words in (
            ("promise_to_pay", settings.promise_to_pay),
            ("help", settings.help),
            ("opt_in", settings.opt_in),
            ("opt_out", settings.opt_out),
        ):
            for word in words:
                self._exact[fold(word)] = kind  # type: ignore[assignment]

    def classify(self, text: str | None) -> ReplyKind:
        folded = fold(text or "")
        if not folded:
            return "reply"
        exact = self._exact.get(folded)
        if exact is not None:
            return exact
        first = _EDGES.sub("", folded.split(" ", 1)[0])
        if first in self._opt_out:
            return "opt_out"
        return "reply"

    def help_text(self, locale: str | None) -> str:
        """The help answer in the debtor's locale (``es-CO`` → ``es-CO`` or ``es``), else the default language."""
        texts = self.settings.help_text
        locale = (locale or "").replace("_", "-")
        for candidate in (locale, locale.split("-")[0].lower(), self.settings.default_language):
            if candidate and candidate in texts:
                return texts[candidate]
        return next(iter(texts.values()), "")
