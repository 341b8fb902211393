"""Validation on save and every compliance lint rule."""

from __future__ import annotations

from shared.events.contracts import TemplateContent
from shared.templates import validate_template
from shared.templates.lint import lint

OK_SMS_ES = ("{{ debtor | first_name }}, {{ creditor.name }}: saldo {{ account.balance | money }}. "
             "Paga: {{ account | payment_link }} Canal autorizado. Responde BAJA para no recibir más SMS")


def codes(findings: list) -> list[str]:  # type: ignore[type-arg]
    return [f.code for f in findings]


def test_a_good_template_has_no_errors() -> None:
    report = validate_template("k", "sms", "es-CO", TemplateContent(body=OK_SMS_ES))
    assert report.publishable, report.findings
    assert report.rendered is not None and report.rendered.sms is not None
    assert report.rendered.sms.encoding == "UCS-2"
    assert "sms_ucs2" in codes(report.findings)


def test_every_problem_is_reported_at_once_with_positions() -> None:
    content = TemplateContent(subject="{{ creditor.name", text="Hola\n  {{ nickname }} {{ account.colour }}", html="x")
    report = validate_template("k", "email", "es-MX", content)
    by_code = {f.code: f for f in report.findings}
    assert by_code["syntax"].field == "subject" and by_code["syntax"].line == 1
    undeclared = by_code["undeclared_variable"]
    assert (undeclared.field, undeclared.line, undeclared.column) == ("text", 2, 6)
    assert by_code["unknown_attribute"].message.startswith("account has no 'colour'")
    assert report.has_syntax_errors


def test_declared_variables_are_accepted_and_sampled() -> None:
    schema = {"properties": {"promise_date": {"type": "string", "format": "date"}}}
    body = "{{ creditor.name }}, a debt collector: {{ promise_date | date }} Reply STOP to opt out"
    report = validate_template("k", "sms", "en-US", TemplateContent(body=body), schema)
    assert report.publishable, report.findings
    assert report.rendered is not None and "March 20, 2025" in (report.rendered.body or "")


def test_unsafe_attributes_are_refused_on_save() -> None:
    report = validate_template("k", "sms", "es-MX", TemplateContent(body="{{ creditor.name }} {{ ''.__class__ }}"))
    assert "unsafe_attribute" in codes(report.errors)


def test_segment_budget_warning() -> None:
    body = "{{ creditor.name }} " + "á" * 300 + " Responde BAJA"
    report = validate_template("k", "sms", "es-MX", TemplateContent(body=body), sms_segment_budget=3)
    warning = next(f for f in report.findings if f.code == "sms_segments")
    assert warning.severity == "warning" and report.publishable


def test_threatening_language_in_spanish_and_english() -> None:
    body = "{{ creditor.name }}: o iras a la CARCEL.\nLlamaremos a la policía"
    es = lint("k", "sms", "es-MX", TemplateContent(body=body))
    hits = [f for f in es if f.code == "threatening_language"]
    assert [(f.line, f.column) for f in hits] == [(1, 34), (2, 17)]
    en = lint("k", "email", "en-US", TemplateContent(subject="x", text="{{ creditor.name }} lawsuit today. STOP",
                                                      html="{{ creditor.name }} criminal charges, arrest. STOP"))
    assert [(f.field, f.code) for f in en if f.code == "threatening_language"] == [
        ("text", "threatening_language"), ("html", "threatening_language"), ("html", "threatening_language"),
    ]
    for phrase in ("demanda penal", "embargo inmediato", "cárcel"):
        assert "threatening_language" in codes(lint("k", "sms", "es-MX", TemplateContent(body=f"{phrase}")))
    for phrase in ("jail", "arrest", "criminal", "lawsuit today"):
        assert "threatening_language" in codes(lint("k", "sms", "en-US", TemplateContent(body=phrase)))


def test_opt_out_required_by_jurisdiction() -> None:
    no_line = TemplateContent(body="{{ creditor.name }}: hola")
    assert "missing_opt_out" in codes(lint("k", "sms", "es-CO", no_line))
    assert "missing_opt_out" in codes(lint("k", "sms", "en-US", no_line))
    assert "missing_opt_out" not in codes(lint("k", "sms", "es-MX", no_line))
    assert "missing_opt_out" not in codes(lint("opt_out_confirmation", "sms", "es-CO", no_line))
    assert "missing_opt_out" not in codes(lint("k", "sms", "en-US", TemplateContent(body="x Reply STOP to opt out")))
    email = TemplateContent(subject="s", text="{{ creditor.name }} responde BAJA", html="{{ creditor.name }}")
    assert [(f.field, f.code) for f in lint("k", "email", "es-CO", email) if f.code == "missing_opt_out"] == [
        ("html", "missing_opt_out")]


VM = "{{{{ creditor.name }}}} {word} {{{{ creditor.phone }}}}"


def test_voicemail_limited_to_who_and_callback() -> None:
    content = TemplateContent(
        voice_script="{{ creditor.name }}",
        voicemail_script="{{ creditor.name }} llama por su deuda de {{ account.balance | money }}, $1,234.50",
    )
    found = [f for f in lint("k", "voice", "es-MX", content) if f.field == "voicemail_script"]
    assert codes(found).count("voicemail_content") >= 3
    assert "voicemail_callback" in codes(found)
    for word in ("adeudo", "saldo"):
        assert "voicemail_content" in codes(lint("k", "voice", "es-MX", TemplateContent(
            voice_script="{{ creditor.name }}", voicemail_script=VM.format(word=word))))
    for word in ("debt", "balance", "payment"):
        assert "voicemail_content" in codes(lint("k", "voice", "en-US", TemplateContent(
            voice_script="{{ creditor.name }}", voicemail_script=VM.format(word=word))))
    clean = TemplateContent(voice_script="{{ creditor.name }}",
                            voicemail_script="Hola, le llama {{ creditor.name }}. Llámenos al {{ creditor.phone }}.")
    assert lint("k", "voice", "es-MX", clean) == []


def test_creditor_must_be_identified() -> None:
    found = lint("k", "sms", "es-MX", TemplateContent(body="Hola {{ debtor.name }}"))
    assert codes(found) == ["missing_creditor"]


def test_whatsapp_and_channel_fields() -> None:
    report = validate_template("k", "whatsapp", "es-MX", TemplateContent(
        body="{{ creditor.name }}", content_sid="HXnope", content_variables={"x": "{{ debtor.first_name }}"}))
    assert {"whatsapp_content_sid", "whatsapp_content_variables"} <= set(codes(report.errors))
    missing = validate_template("k", "email", "es-MX", TemplateContent(body="{{ creditor.name }}"))
    assert "missing_field" in codes(missing.errors) and "unused_field" in codes(missing.findings)
