"""Per-pack template rules: the US debt-collector identification and Mini-Miranda, Colombia's authorised
channel; each finding cites its source."""

from __future__ import annotations

from shared.events.contracts import TemplateContent
from shared.templates.lint import lint

PAY = "{{ creditor.name }}: your payment of {{ account.balance | money }} is due. Reply STOP to opt out."
COLLECTOR = " This is a message from a debt collector."
MIRANDA = " This is an attempt to collect a debt and any information obtained will be used for that purpose."


def codes(key: str, channel: str, locale: str, **content: str) -> dict[str, str]:
    return {f.code: f.message for f in lint(key, channel, locale, TemplateContent(**content))  # type: ignore[arg-type]
            if f.severity == "error"}


def test_us_messages_identify_a_debt_collector_and_the_first_carries_the_mini_miranda() -> None:
    found = codes("reminder_early", "sms", "en-US", body=PAY)
    assert "15 U.S.C. 1692e(11)" in found["missing_debt_collector"]
    assert "1006.18(e)(1)" in found["missing_mini_miranda"]
    assert codes("reminder_early", "sms", "en-US", body=PAY + COLLECTOR + MIRANDA) == {}
    # later messages need the identification, not the first-contact disclosure
    assert set(codes("reminder_late", "sms", "en-US", body=PAY)) == {"missing_debt_collector"}
    assert codes("reminder_late", "sms", "en-US", body=PAY + COLLECTOR) == {}
    spanish = "{{ creditor.name }}: tu pago vence. Mensaje de un cobrador de deudas. Responde STOP."
    assert codes("reminder_late", "sms", "es-US", body=spanish) == {}


def test_the_voicemail_is_exempt_and_must_stay_limited() -> None:
    voicemail = "Hello, this is {{ creditor.name }}. Please call us back at {{ creditor.phone }}."
    found = codes("reminder_late", "voice", "en-US", voice_script="{{ creditor.name }} calling." + COLLECTOR,
                  voicemail_script=voicemail)
    assert found == {}


def test_colombian_messages_say_the_channel_was_authorised() -> None:
    body = "{{ creditor.name }} te recuerda tu pago. Responde BAJA para no recibir más SMS."
    found = codes("reminder_late", "sms", "es-CO", body=body)
    assert "Ley 2300 de 2023" in found["missing_authorized_channel"]
    assert codes("reminder_late", "sms", "es-CO", body=body + " Te escribimos por SMS, canal que autorizaste.") == {}
    assert codes("reminder_late", "sms", "es-MX", body=body) == {}  # Mexico has no such rule
    assert codes("opt_out_confirmation", "sms", "es-CO", body="{{ creditor.name }}: listo, no más SMS.") == {}
