"""SMS encoding and segment math: GSM-7 (160 / 153 septets) or UCS-2 (70 / 67 code units).

A message is GSM-7 when every character is in the GSM 03.38 default alphabet or its extension
table; extension characters (``€ [ ] { } ~ ^ \\ |`` and form feed) cost two septets (ESC + char)
and are never split across segments. Anything else (``á í ó ú``, emoji, ...) forces UCS-2, where
characters outside the BMP take two UTF-16 code units and are not split either.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field
from typing import Literal

GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")
GSM7 = GSM7_BASIC | GSM7_EXTENSION

GSM7_SINGLE, GSM7_MULTI = 160, 153
UCS2_SINGLE, UCS2_MULTI = 70, 67

Encoding = Literal["GSM-7", "UCS-2"]


@dataclass(frozen=True)
class SmsSegments:
    """How a body travels: its encoding, length in units (septets or UTF-16 code units), segments."""

    encoding: Encoding
    units: int
    segments: int
    per_segment: int
    #: Characters that forced UCS-2 (empty for GSM-7), in order of first appearance.
    non_gsm: tuple[str, ...] = field(default=())


def _char_cost(ch: str, encoding: Encoding) -> int:
    if encoding == "GSM-7":
        return 2 if ch in GSM7_EXTENSION else 1
    return 2 if ord(ch) > 0xFFFF else 1


def _pack(text: str, encoding: Encoding, limit: int) -> int:
    """Segments needed when each segment holds ``limit`` units and no character is split."""
    segments, used = 1, 0
    for ch in text:
        cost = _char_cost(ch, encoding)
        if used + cost > limit:
            segments, used = segments + 1, 0
        used += cost
    return segments


def sms_segments(text: str) -> SmsSegments:
    """Encoding, unit count and segment count of ``text`` as an SMS."""
    # Set operations over the distinct characters, not a Python step per character (every SMS is
    # counted when it is rendered); only a message longer than one segment is packed char by char.
    chars = set(text)
    outside = chars - GSM7
    non_gsm = tuple(dict.fromkeys(ch for ch in text if ch in outside)) if outside else ()
    if non_gsm:
        encoding: Encoding = "UCS-2"
        single, multi = UCS2_SINGLE, UCS2_MULTI
        wide = [ch for ch in chars if ord(ch) > 0xFFFF]
    else:
        encoding, single, multi = "GSM-7", GSM7_SINGLE, GSM7_MULTI
        wide = list(chars & GSM7_EXTENSION)
    units = len(text) + sum(text.count(ch) for ch in wide)  # a wide character costs two units
    if units == 0:
        return SmsSegments(encoding, 0, 0, single, non_gsm)
    if units <= single:
        return SmsSegments(encoding, units, 1, single, non_gsm)
    segments = _pack(text, encoding, multi) if wide else -(-units // multi)
    return SmsSegments(encoding, units, segments, multi, non_gsm)


#: Characters outside GSM-7 that have a faithful GSM-7 spelling (Spanish accents first). Characters
#: already in GSM-7 (``é ñ ü ¿ ¡ à``) stay; anything unmapped is dropped by ``to_gsm7``.
_TRANSLITERATION = {
    "á": "a", "í": "i", "ó": "o", "ú": "u", "Á": "A", "Í": "I", "Ó": "O", "Ú": "U", "É": "E",
    "ê": "e", "â": "a", "î": "i", "ô": "o", "û": "u", "ã": "a", "õ": "o", "ç": "c", "ï": "i", "ë": "e",
    "“": '"', "”": '"', "‘": "'", "’": "'", "–": "-", "—": "-", "…": "...", "\u00a0": " ", "\u202f": " ",
}


def to_gsm7(text: str) -> str:
    """``text`` spelled in the GSM 03.38 alphabet: accents transliterated, anything else removed."""
    out = []
    for ch in text:
        if ch in GSM7_BASIC or ch in GSM7_EXTENSION:
            out.append(ch)
        elif ch in _TRANSLITERATION:
            out.append(_TRANSLITERATION[ch])
        else:
            base = unicodedata.normalize("NFKD", ch)
            out.append("".join(c for c in base if c in GSM7_BASIC))
    return "".join(out)
