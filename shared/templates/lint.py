"""Compliance lint: the rules are data (terms per language, opt-out requirements per jurisdiction).

* ``threatening_language`` (error): threats or false authority ("cárcel", "policía", "jail", "arrest"...).
* ``missing_opt_out`` (error): SMS/email without an opt-out line where the jurisdiction requires one.
* ``voicemail_content`` (error): a voicemail that mentions the debt, a balance, a payment or an amount.
* ``missing_creditor`` (error): a message that does not name the creditor (``creditor.name``).
* ``voicemail_callback`` (warning): a voicemail without a callback number (``creditor.phone``).
* per-pack rules (:mod:`shared.templates.pack_lint`): ``missing_debt_collector`` and
  ``missing_mini_miranda`` (US), ``missing_authorized_channel`` (CO), each citing its source.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator

from shared.events.contracts import Channel, TemplateContent
from shared.templates.models import Finding
from shared.templates.pack_lint import lint_pack
from shared.templates.variables import region_of

#: Threatening or false-authority wording, by language (matched accent- and case-insensitively).
THREATENING_TERMS: dict[str, tuple[str, ...]] = {
    "es": (
        "cárcel", "prisión", "demanda penal", "denuncia penal", "policía", "embargo inmediato",
        "orden de aprehensión", "orden de arresto", "arresto", "delito", "antecedentes penales",
        "ministerio público", "fiscalía", "vamos a demandar", "acción penal", "juzgado penal",
    ),
    "en": (
        "jail", "prison", "arrest", "arrested", "lawsuit today", "criminal", "police", "warrant",
        "sheriff", "we will sue", "seize your", "garnish your wages", "federal agent",
    ),
}
#: Words a limited-content voicemail must not say (it may say who is calling and a number to call back).
VOICEMAIL_FORBIDDEN: dict[str, tuple[str, ...]] = {
    "es": ("deuda", "adeudo", "saldo", "pago", "pagar", "cobranza", "cobro", "vencido", "vencida", "mora",
           "atraso", "monto"),
    "en": ("debt", "balance", "payment", "pay", "owe", "owed", "overdue", "past due", "collection",
           "delinquent", "amount"),
}
#: Template expressions that put an amount or the account into a voicemail.
VOICEMAIL_FORBIDDEN_EXPRESSIONS = re.compile(r"\|\s*money\b|\baccount\s*\.\s*(balance|payment_url|days_past_due)|"
                                             r"\b(payment|self_service)_link\b|\bself_service_url\b")
MONEY_AMOUNT = re.compile(r"[$€£]\s?\d|\b\d{1,3}(?:[.,]\d{3})*[.,]\d{2}\b")

#: Channels that must carry an opt-out line, by jurisdiction (ISO 3166 region of the locale).
OPT_OUT_REQUIRED: dict[str, frozenset[Channel]] = {
    "US": frozenset({"sms", "email"}),
    "CO": frozenset({"sms", "email"}),
}
#: What counts as an opt-out line, by language (regular expressions on accent-folded lower case).
OPT_OUT_MARKERS: dict[str, tuple[str, ...]] = {
    "es": (r"\bbaja\b", r"cancelar (tu |la )?suscripcion", r"no recibir mas"),
    "en": (r"\bstop\b", r"unsubscribe", r"opt[ -]out"),
}
#: Keys that are themselves the answer to an opt-out and need no opt-out line.
OPT_OUT_EXEMPT_KEYS = frozenset({"opt_out_confirmation"})
CREDITOR_NAME = re.compile(r"\bcreditor\s*(\.\s*name\b|\[\s*['\"]name['\"]\s*\])")
CREDITOR_PHONE = re.compile(r"\bcreditor\s*(\.\s*phone\b|\[\s*['\"]phone['\"]\s*\])")


def fold(text: str) -> str:
    """Lower case without accents, one character per input character (so offsets stay valid)."""
    return "".join(unicodedata.normalize("NFKD", ch)[:1] or ch for ch in text).lower()


def language_of(locale: str) -> str:
    return locale.replace("_", "-").split("-")[0].lower()


def position(source: str, offset: int) -> tuple[int, int]:
    """1-based (line, column) of ``offset`` in ``source``."""
    line = source.count("\n", 0, offset) + 1
    return line, offset - (source.rfind("\n", 0, offset) + 1) + 1


def _term_pattern(term: str) -> re.Pattern[str]:
    return re.compile(r"(?<!\w)" + re.escape(fold(term)) + r"(?!\w)")


def _find_terms(source: str, terms: tuple[str, ...]) -> Iterator[tuple[str, int]]:
    folded = fold(source)
    for term in terms:
        for match in _term_pattern(term).finditer(folded):
            yield term, match.start()


def _fields(content: TemplateContent) -> Iterator[tuple[str, str]]:
    for name in ("body", "subject", "text", "html", "voice_script", "voicemail_script"):
        value = getattr(content, name)
        if value:
            yield name, value
    for name in ("ivr_prompts", "content_variables"):
        mapping: dict[str, str] | None = getattr(content, name)
        for k, v in (mapping or {}).items():
            yield f"{name}.{k}", v


def lint_threats(locale: str, content: TemplateContent) -> list[Finding]:
    terms = THREATENING_TERMS.get(language_of(locale), ()) + (THREATENING_TERMS["en"] if language_of(locale) != "en"
                                                              else ())
    found = []
    for field, source in _fields(content):
        for term, offset in _find_terms(source, terms):
            line, column = position(source, offset)
            found.append(Finding(
                code="threatening_language", severity="error", field=field, line=line, column=column,
                message=f"threatening or false-authority wording: {term!r}; inform and offer help instead",
            ))
    return found


def opt_out_required(locale: str, channel: Channel) -> bool:
    return channel in OPT_OUT_REQUIRED.get(region_of(locale), frozenset())


def lint_opt_out(key: str, channel: Channel, locale: str, content: TemplateContent) -> list[Finding]:
    if key in OPT_OUT_EXEMPT_KEYS or not opt_out_required(locale, channel):
        return []
    markers = OPT_OUT_MARKERS.get(language_of(locale), ()) + OPT_OUT_MARKERS["en"]
    fields = ("body",) if channel == "sms" else ("text", "html")
    found = []
    for field in fields:
        source = getattr(content, field)
        if source is None:
            continue
        folded = fold(source)
        if not any(re.search(marker, folded) for marker in markers):
            english = language_of(locale) == "en"
            example = "Reply STOP to opt out" if english else "Responde BAJA para no recibir más SMS"
            found.append(Finding(
                code="missing_opt_out", severity="error", field=field,
                message=f"{region_of(locale)} requires an opt-out line on {channel} (e.g. \"{example}\")",
            ))
    return found


def lint_voicemail(locale: str, content: TemplateContent) -> list[Finding]:
    source = content.voicemail_script
    if not source:
        return []
    found = []
    hits = list(_find_terms(source, VOICEMAIL_FORBIDDEN.get(language_of(locale), ()) + VOICEMAIL_FORBIDDEN["en"]))
    for term, offset in hits:
        line, column = position(source, offset)
        found.append(Finding(
            code="voicemail_content", severity="error", field="voicemail_script", line=line, column=column,
            message=f"a voicemail may only say who is calling and a callback number; remove {term!r}",
        ))
    for match in [*VOICEMAIL_FORBIDDEN_EXPRESSIONS.finditer(source), *MONEY_AMOUNT.finditer(source)]:
        line, column = position(source, match.start())
        found.append(Finding(
            code="voicemail_content", severity="error", field="voicemail_script", line=line, column=column,
            message=f"a voicemail must not mention amounts or the account: {match.group(0).strip()!r}",
        ))
    if not CREDITOR_PHONE.search(source):
        found.append(Finding(
            code="voicemail_callback", severity="warning", field="voicemail_script",
            message="a voicemail should leave a callback number ({{ creditor.phone }})",
        ))
    return found


#: Fields that must name the creditor, by channel.
CREDITOR_FIELDS: dict[Channel, tuple[str, ...]] = {
    "sms": ("body",),
    "whatsapp": ("body",),
    "email": ("text", "html"),
    "voice": ("voice_script", "voicemail_script"),
}


def lint_creditor(channel: Channel, content: TemplateContent) -> list[Finding]:
    found = []
    for field in CREDITOR_FIELDS[channel]:
        source = getattr(content, field)
        if source is not None and not CREDITOR_NAME.search(source):
            found.append(Finding(
                code="missing_creditor", severity="error", field=field,
                message="the message must identify the creditor ({{ creditor.name }})",
            ))
    return found


def lint(key: str, channel: Channel, locale: str, content: TemplateContent) -> list[Finding]:
    """Every compliance finding for one template's content, in field order."""
    return [
        *lint_threats(locale, content),
        *lint_opt_out(key, channel, locale, content),
        *(lint_voicemail(locale, content) if channel == "voice" else []),
        *lint_creditor(channel, content),
        *lint_pack(key, channel, locale, content),
    ]
