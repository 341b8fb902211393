"""Limits a debtor states in a reply (12 CFR 1006.6(b)(1)), read in Spanish and English."""

from __future__ import annotations

import pytest

from services.messaging.keywords import KeywordClassifier
from services.messaging.settings import KeywordSettings
from shared.stated_limits import from_text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("no calls before 10", [{"days": [], "start": "00:00", "end": "10:00", "channels": ["voice"]}]),
        ("No me llamen antes de las 10", [{"days": [], "start": "00:00", "end": "10:00", "channels": ["voice"]}]),
        ("después de las 6 pm no me escriban",
         [{"days": [], "start": "18:00", "end": "24:00", "channels": ["sms", "whatsapp", "email"]}]),
        ("after 8:30pm no texts please",
         [{"days": [], "start": "20:30", "end": "24:00", "channels": ["sms", "whatsapp", "email"]}]),
        ("not on weekends", [{"days": ["sat", "sun"], "start": None, "end": None, "channels": []}]),
        ("los fines de semana no", [{"days": ["sat", "sun"], "start": None, "end": None, "channels": []}]),
        ("no me llamen al trabajo",
         [{"days": [], "start": None, "end": None, "channels": ["voice"], "place": "work"}]),
        ("Ya pagué, gracias", []),
        ("STOP", []),
    ],
)
def test_limits_read_from_replies(text: str, expected: list) -> None:
    assert from_text(text) == expected


def test_a_reply_stating_times_is_a_reply_for_the_orchestrator_not_an_opt_out() -> None:
    classifier = KeywordClassifier(KeywordSettings())
    assert classifier.classify("no me llamen antes de las 10") == "reply"
    assert classifier.classify("stop texting me after 8pm") == "reply"
    # a place Cadencia cannot check stays an opt-out: honouring it is the safe reading
    assert classifier.classify("no me llamen en el trabajo") == "opt_out"
    assert classifier.classify("no me llamen") == "opt_out"
