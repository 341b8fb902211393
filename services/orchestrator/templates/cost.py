"""What an SMS costs, and the same SMS in GSM-7: the editor's cost view.

Carriers bill per segment; a single ``í`` turns a 160-character GSM-7 segment into a 70-unit
UCS-2 one, so a reminder can cost three times as much. The rewrite transliterates accents in the
template's text and spells every output through ``| gsm7``, so a name such as "María" cannot make
the message UCS-2 again.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from services.orchestrator.templates import template_store
from services.orchestrator.templates.schemas import Gsm7Rewrite, SmsCost, SmsPrice
from shared.templates.models import SmsInfo
from shared.templates.sms import to_gsm7

#: Indicative outbound prices per segment (USD) by country; set the contract's in
#: ``CADENCIA_ORCHESTRATOR_SMS_PRICES`` (``{"CO": "0.0350 USD"}``).
DEFAULT_PRICES: dict[str, str] = {
    "US": "0.0083 USD", "MX": "0.0524 USD", "CO": "0.0350 USD", "PE": "0.0650 USD", "CL": "0.0570 USD",
}
#: Segments a shipped SMS may take: two GSM-7 segments hold 306 characters.
SEGMENT_BUDGET = 2

_OUTPUT = re.compile(r"\{\{(-?)(.*?)(-?)\}\}", re.DOTALL)


def price_for(locale: str, prices: dict[str, str]) -> tuple[Decimal, str] | None:
    """The per-segment price of the locale's country (``es-CO`` -> CO), or None when unknown."""
    country = locale.rpartition("-")[2].upper()
    entry = {**DEFAULT_PRICES, **prices}.get(country)
    if not entry:
        return None
    amount, _, currency = entry.strip().partition(" ")
    return Decimal(amount), (currency or "USD").upper()


def price(sms: SmsInfo, locale: str, prices: dict[str, str]) -> SmsPrice | None:
    found = price_for(locale, prices)
    if found is None:
        return None
    per_segment, currency = found
    per_send = per_segment * sms.segments
    return SmsPrice(currency=currency, per_segment=str(per_segment), segments=sms.segments,
                    per_send=f"{per_send:.4f}", per_10k=f"{per_send * 10_000:.2f}")


def gsm7_source(body: str) -> str:
    """The template body with its text transliterated and every ``{{ output }}`` passed through ``gsm7``."""

    def wrap(match: re.Match[str]) -> str:
        left, expression, right = match.group(1), match.group(2).strip(), match.group(3)
        if re.search(r"\|\s*gsm7\s*$", expression):
            return match.group(0)
        return f"{{{{{left} ({expression}) | gsm7 {right}}}}}"

    return _OUTPUT.sub(wrap, to_gsm7(body))


def sms_cost(key: str, draft: template_store.Draft, sms: SmsInfo | None, sample: dict[str, Any] | None,
             prices: dict[str, str]) -> SmsCost | None:
    """The cost of the rendered SMS, and a GSM-7 rewrite when it would be cheaper."""
    if draft.channel != "sms" or sms is None or not draft.content.body:
        return None
    rewrite = None
    if sms.encoding == "UCS-2":
        source = gsm7_source(draft.content.body)
        candidate = template_store.Draft(draft.channel, draft.locale, draft.variant,
                                  draft.content.model_copy(update={"body": source}), draft.variables_schema)
        report = template_store.validate_draft(key, candidate, sample)
        rendered = report.rendered
        if rendered is not None and rendered.sms is not None and rendered.body is not None \
                and rendered.sms.segments <= sms.segments:
            rewrite = Gsm7Rewrite(body=source, rendered=rendered.body, sms=rendered.sms,
                                  cost=price(rendered.sms, draft.locale, prices))
    return SmsCost(cost=price(sms, draft.locale, prices), gsm7_rewrite=rewrite, budget=SEGMENT_BUDGET)
