"""Per-pack template rules: what each jurisdiction requires a collection message to say, as data.

A template is held to the rules of its locale's region (``en-US`` and ``es-US`` → ``US``, ``es-CO`` →
``CO``), and every finding cites the rule's legal source, as the policy packs do.

* ``US.debt_collector`` — every message identifies the sender as a debt collector
  (15 U.S.C. 1692e(11); 12 CFR 1006.18(e)). The limited-content voicemail is exempt: it must not.
* ``US.mini_miranda`` — the first message (keys matching ``FIRST_CONTACT_KEYS``: the early reminder
  that opens a cadence) also says it is an attempt to collect a debt and that any information
  obtained will be used for that purpose (15 U.S.C. 1692e(11); 12 CFR 1006.18(e)(1)).
* ``CO.authorized_channel`` — a message says it comes through a channel the debtor authorised
  (Ley 2300 de 2023 art. 2); naming the creditor is checked for every pack by ``missing_creditor``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.events.contracts import Channel, TemplateContent
from shared.templates.models import Finding
from shared.templates.variables import region_of

#: Keys of the message that opens a cadence (its first contact with the debtor).
FIRST_CONTACT_KEYS = re.compile(r"^(reminder_early|initial|first)")
#: Answers to an opt-out need nothing else (they confirm the debtor will not be contacted).
EXEMPT_KEYS = frozenset({"opt_out_confirmation"})
#: Where each channel's message text lives (never the voicemail: a limited-content message).
FIELDS: dict[Channel, tuple[str, ...]] = {
    "sms": ("body",), "whatsapp": ("body",), "email": ("text", "html"), "voice": ("voice_script",),
}


@dataclass(frozen=True)
class PackTemplateRule:
    id: str
    code: str
    source: str
    #: Accent-folded lower-case regular expressions per language; any one satisfies the rule.
    markers: dict[str, tuple[str, ...]]
    message: str
    first_contact_only: bool = False


PACK_TEMPLATE_RULES: dict[str, tuple[PackTemplateRule, ...]] = {
    "US": (
        PackTemplateRule(
            "US.debt_collector", "missing_debt_collector", "15 U.S.C. 1692e(11); 12 CFR 1006.18(e)",
            {"en": (r"debt collector",), "es": (r"cobrador(a)? de deudas", r"agencia de cobranza")},
            "identify the sender as a debt collector (e.g. \"This is a message from a debt collector.\")",
        ),
        PackTemplateRule(
            "US.mini_miranda", "missing_mini_miranda", "15 U.S.C. 1692e(11); 12 CFR 1006.18(e)(1)",
            {"en": (r"attempt to collect a debt.*information obtained will be used",),
             "es": (r"intento de cobrar una deuda.*informacion (que se )?obtenga se usara",)},
            "the first message must say it is an attempt to collect a debt and that any information obtained "
            "will be used for that purpose",
            first_contact_only=True,
        ),
    ),
    "CO": (
        PackTemplateRule(
            "CO.authorized_channel", "missing_authorized_channel", "Ley 2300 de 2023 art. 2",
            {"es": (r"autoriz",), "en": (r"authori[sz]",)},
            "say the message comes through a channel the debtor authorised (e.g. \"…por este canal, que "
            "autorizaste\")",
        ),
    ),
}


def _fold(text: str) -> str:
    from shared.templates.lint import fold

    return " ".join(fold(text).split())


def lint_pack(key: str, channel: Channel, locale: str, content: TemplateContent) -> list[Finding]:
    """The findings of the locale's pack rules for one template's content."""
    rules = PACK_TEMPLATE_RULES.get(region_of(locale), ())
    if not rules or key in EXEMPT_KEYS:
        return []
    language = locale.replace("_", "-").split("-")[0].lower()
    found = []
    for rule in rules:
        if rule.first_contact_only and not FIRST_CONTACT_KEYS.match(key):
            continue
        markers = rule.markers.get(language, ()) + tuple(m for lang, ms in rule.markers.items() if lang != language
                                                         for m in ms)
        for field in FIELDS[channel]:
            source = getattr(content, field)
            if source is None:
                continue
            folded = _fold(source)
            if not any(re.search(marker, folded, re.DOTALL) for marker in markers):
                found.append(Finding(
                    code=rule.code, severity="error", field=field,
                    message=f"{rule.id}: {rule.message} (source: {rule.source})",
                ))
    return found
