"""Pure rules of a call: the Say language, the TwiML documents, and what a call status means.

* A machine (``AnsweredBy`` ``machine_*``, and ``unknown``: AMD could not tell) hears **only** the
  voicemail script — who to call back, never the debt (docs/internals.md: limited content) — then the call hangs up.
* A person hears the live script and the IVR prompt inside ``<Gather numDigits="1">``; no key falls
  through to a short goodbye.
* ``fax`` is hung up on.
"""

from __future__ import annotations

from twilio.twiml.voice_response import VoiceResponse

from shared.events.contracts import ResponseKind

#: Locales Twilio's ``<Say>`` speaks as given; other locales of a language fall back to its default.
SAY_LANGUAGES = frozenset({"es-MX", "es-US", "es-ES", "en-US", "en-GB", "en-AU", "en-IN"})
LANGUAGE_DEFAULT = {"es": "es-MX", "en": "en-US"}

#: What we say after a key, then hang up.
THANKS: dict[str, dict[str, str]] = {
    "es": {
        "promise_to_pay": "Gracias. Registramos su intención de pago y le enviaremos los detalles.",
        "callback_request": "Gracias. Un asesor se comunicará con usted pronto.",
        "opt_out": "Entendido. No volveremos a llamarle a este número.",
        "keypress": "Gracias por su respuesta.",
        "no_input": "No recibimos respuesta. Gracias, hasta luego.",
    },
    "en": {
        "promise_to_pay": "Thank you. We have recorded your intention to pay and will send you the details.",
        "callback_request": "Thank you. An agent will call you back soon.",
        "opt_out": "Understood. We will not call this number again.",
        "keypress": "Thank you for your answer.",
        "no_input": "We did not receive an answer. Thank you, goodbye.",
    },
}


def say_language(locale: str) -> str:
    """The ``<Say language>`` for a dispatch locale: ``es-MX``, ``es-US``, ``en-US`` as given;
    ``es-CO``/``es-PE``/``es-CL`` (not Say languages) → ``es-MX``; other English → ``en-US``."""
    normalized = locale.replace("_", "-")
    parts = normalized.split("-")
    language = parts[0].lower()
    candidate = f"{language}-{parts[1].upper()}" if len(parts) > 1 else language
    if candidate in SAY_LANGUAGES:
        return candidate
    return LANGUAGE_DEFAULT.get(language, "es-MX")


def is_machine(answered_by: str | None) -> bool:
    """Whether the voicemail (and only it) is played: a machine, or an answer AMD could not classify."""
    return answered_by is not None and (answered_by.startswith("machine") or answered_by == "unknown")


def voicemail(voicemail_script: str | None, locale: str) -> str:
    answer = VoiceResponse()
    if voicemail_script:
        answer.say(voicemail_script, language=say_language(locale))
    answer.hangup()
    return str(answer)


def live(voice_script: str, ivr_prompt: str | None, locale: str, action: str, timeout_s: int) -> str:
    language = say_language(locale)
    answer = VoiceResponse()
    gather = answer.gather(num_digits=1, action=action, method="POST", timeout=timeout_s, language=language)
    gather.say(voice_script, language=language)
    if ivr_prompt:
        gather.say(ivr_prompt, language=language)
    answer.say(thanks("no_input", locale), language=language)
    answer.hangup()
    return str(answer)


def hangup() -> str:
    answer = VoiceResponse()
    answer.hangup()
    return str(answer)


def thanks(kind: str, locale: str) -> str:
    texts = THANKS.get(locale.split("-")[0].lower(), THANKS["es"])
    return texts.get(kind, texts["keypress"])


def goodbye(kind: str, locale: str) -> str:
    answer = VoiceResponse()
    answer.say(thanks(kind, locale), language=say_language(locale))
    answer.hangup()
    return str(answer)


def ivr_prompt(prompts: dict[str, str] | None) -> str | None:
    """The rendered prompts in key order (``"1"``, ``"2"``, ``"9"``), one sentence after another."""
    if not prompts:
        return None
    return " ".join(prompts[key].strip() for key in sorted(prompts) if prompts[key].strip()) or None


def response_kind(digits: str, digit_map: dict[str, ResponseKind]) -> ResponseKind:
    return digit_map.get(digits, "keypress")


def call_outcome(call_status: str, answered_by: str | None) -> str | None:
    """``CallStatus`` (+ who answered) → ``DeliveryUpdated.status``; ``None`` for statuses only recorded.

    ``answered_by`` is what the TwiML webhook acted on (the session), else the callback's ``AnsweredBy``:
    the outcome says what the debtor actually got, a conversation or a voicemail.
    """
    status = call_status.lower()
    if status in ("queued", "initiated", "ringing", "in-progress"):
        return "sent"
    if status == "completed":
        if answered_by == "fax":
            return "failed"
        return "voicemail" if is_machine(answered_by) else "conversation"
    return {"no-answer": "no_answer", "busy": "busy", "failed": "failed", "canceled": "failed"}.get(status)
