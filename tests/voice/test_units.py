"""Voice rules as pure functions: Say language, TwiML documents, call outcomes, keypress mapping."""

from __future__ import annotations

import pytest

from services.voice import twiml
from services.voice.settings import DEFAULT_DIGITS


@pytest.mark.parametrize(
    ("locale", "language"),
    [("es-MX", "es-MX"), ("es-US", "es-US"), ("es-CO", "es-MX"), ("es_PE", "es-MX"), ("es-CL", "es-MX"),
     ("es", "es-MX"), ("en-US", "en-US"), ("en-CA", "en-US"), ("en", "en-US"), ("pt-BR", "es-MX")],
)
def test_say_language(locale: str, language: str) -> None:
    assert twiml.say_language(locale) == language


@pytest.mark.parametrize(
    ("status", "answered_by", "outcome"),
    [("initiated", None, "sent"), ("ringing", None, "sent"), ("in-progress", "human", "sent"),
     ("completed", "human", "conversation"), ("completed", None, "conversation"),
     ("completed", "machine_end_beep", "voicemail"), ("completed", "machine_start", "voicemail"),
     ("completed", "unknown", "voicemail"), ("completed", "fax", "failed"), ("no-answer", None, "no_answer"),
     ("busy", None, "busy"), ("failed", None, "failed"), ("canceled", None, "failed"), ("queued", None, "sent"),
     ("weird", None, None)],
)
def test_call_outcome(status: str, answered_by: str | None, outcome: str | None) -> None:
    assert twiml.call_outcome(status, answered_by) == outcome


def test_voicemail_says_only_the_voicemail_script_then_hangs_up() -> None:
    doc = twiml.voicemail("Llámenos al 800.", "es-CO")
    assert doc.endswith('<Response><Say language="es-MX">Llámenos al 800.</Say><Hangup /></Response>')
    assert twiml.voicemail(None, "es-MX").endswith("<Response><Hangup /></Response>")


def test_live_gathers_one_digit_with_script_and_prompt_then_falls_back() -> None:
    doc = twiml.live("Su saldo es $10.", "Marque 1.", "en-US", "https://voice.example/voice/gather/d1", 5)
    assert (
        '<Gather action="https://voice.example/voice/gather/d1" language="en-US" method="POST" numDigits="1" '
        'timeout="5"><Say language="en-US">Su saldo es $10.</Say><Say language="en-US">Marque 1.</Say></Gather>'
    ) in doc
    assert doc.endswith("We did not receive an answer. Thank you, goodbye.</Say><Hangup /></Response>")


def test_keypress_mapping_and_prompts() -> None:
    assert [twiml.response_kind(d, DEFAULT_DIGITS) for d in ("1", "2", "9", "5")] == [
        "promise_to_pay", "callback_request", "opt_out", "keypress"
    ]
    assert twiml.ivr_prompt({"9": "Nueve.", "1": "Uno. "}) == "Uno. Nueve."
    assert twiml.ivr_prompt(None) is None
    assert "No volveremos" in twiml.goodbye("opt_out", "es-MX")
    assert "An agent will call you back" in twiml.goodbye("callback_request", "en-US")


def test_paced_calls_claim_no_further_ahead_than_the_calls_in_flight(monkeypatch: pytest.MonkeyPatch) -> None:
    from services.voice.settings import Settings

    for name in ("CADENCIA_VOICE_SENDING__MAX_CLAIMED", "CADENCIA_VOICE_SENDING__MAX_IN_FLIGHT"):
        monkeypatch.delenv(name, raising=False)
    assert Settings().sending.max_claimed == Settings().sending.max_in_flight
    monkeypatch.setenv("CADENCIA_VOICE_SENDING__MAX_IN_FLIGHT", "8")
    assert Settings().sending.max_claimed == 8
    monkeypatch.setenv("CADENCIA_VOICE_SENDING__MAX_CLAIMED", "64")  # an explicit window is kept
    assert Settings().sending.max_claimed == 64
