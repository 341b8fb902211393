"""Times and places a debtor says are inconvenient (12 CFR 1006.6(b)(1)), as data both sides share.

A limit is ``{"days": [...], "start": "HH:MM", "end": "HH:MM", "channels": [...], "place": ...}``:
no contact on those weekdays (``mon``..``sun``; every day when empty) in local ``[start, end)``
(the whole day when both are missing), on those channels (every channel when empty). ``place``
(``work``) is recorded; Cadencia does not know which address is a workplace, so it is not enforced.

:func:`from_text` reads the limits a reply states (``"no calls before 10"``, ``"no me llamen antes
de las 10"``, ``"not on weekends"``, ``"después de las 6 pm no"``); the message channels treat such
a reply as a ``reply`` for the orchestrator to record, never as an opt-out of the whole channel.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CALLS = re.compile(r"\b(call|calls|calling|phone|llam\w*|telefon\w*)\b")
_TEXTS = re.compile(r"\b(text|texts|texting|sms|message|messages|mensaje\w*|escrib\w*)\b")
_HOUR = r"(\d{1,2})(?:[:.h](\d{2}))?\s*(am|pm|a\.?\s?m\.?|p\.?\s?m\.?|hrs|horas)?"
_BEFORE = re.compile(r"\b(before|antes de(?: las| la)?)\s+" + _HOUR)
_AFTER = re.compile(r"\b(after|despues de(?: las| la)?|pasadas las)\s+" + _HOUR)
_WEEKENDS = re.compile(r"\b(weekends?|fin(?:es)? de semana|sabados? (?:ni|y|o) domingos?)\b")
_SUNDAYS = re.compile(r"\b(sundays?|domingos?)\b")
_WORK = re.compile(r"\b(at work|at my work|my job|(?:en|al) (?:el |mi )?trabajo|en la oficina)\b")


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def _clock(hour: str, minute: str | None, suffix: str | None) -> str | None:
    h, m = int(hour), int(minute or 0)
    mark = (suffix or "").replace(".", "").replace(" ", "")
    if mark == "pm" and h < 12:
        h += 12
    if mark == "am" and h == 12:
        h = 0
    if not (0 <= h <= 24 and 0 <= m < 60) or (h == 24 and m):
        return None
    return f"{h:02d}:{m:02d}"


def from_text(text: str | None) -> list[dict[str, Any]]:
    """The limits a debtor's reply states; empty when it states none."""
    folded = _fold(text or "")
    if not folded:
        return []
    channels = (["voice"] if _CALLS.search(folded) else []) + (
        ["sms", "whatsapp", "email"] if _TEXTS.search(folded) else [])
    found: list[dict[str, Any]] = []
    if (m := _BEFORE.search(folded)) and (at := _clock(m.group(2), m.group(3), m.group(4))):
        found.append({"days": [], "start": "00:00", "end": at, "channels": channels})
    if (m := _AFTER.search(folded)) and (at := _clock(m.group(2), m.group(3), m.group(4))):
        found.append({"days": [], "start": at, "end": "24:00", "channels": channels})
    if _WEEKENDS.search(folded):
        found.append({"days": ["sat", "sun"], "start": None, "end": None, "channels": channels})
    elif _SUNDAYS.search(folded):
        found.append({"days": ["sun"], "start": None, "end": None, "channels": channels})
    if _WORK.search(folded):
        found.append({"days": [], "start": None, "end": None, "channels": channels, "place": "work"})
    return found
