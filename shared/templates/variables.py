"""The variables every template sees, the fields each channel uses, and sample data for previews."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any

from shared.events.contracts import Channel

#: Standard objects in every template's context and the attributes templates may read.
STANDARD_VARIABLES: dict[str, frozenset[str]] = {
    "debtor": frozenset({"id", "name", "first_name"}),
    "account": frozenset({"id", "balance", "currency", "days_past_due", "due_date", "payment_url", "product",
                          "self_service_url"}),
    "creditor": frozenset({"name", "phone"}),
}
#: Plain names also in every context: the template's locale and channel, and the raw request variables.
CONTEXT_NAMES = frozenset({"locale", "channel", "variables"})

#: Content fields per channel: ``(field, required)``. ``ivr_prompts`` and ``content_variables`` are maps.
CHANNEL_FIELDS: dict[Channel, tuple[tuple[str, bool], ...]] = {
    "sms": (("body", True),),
    "whatsapp": (("body", True), ("content_sid", False), ("content_variables", False)),
    "email": (("subject", True), ("text", True), ("html", False)),
    "voice": (("voice_script", True), ("voicemail_script", True), ("ivr_prompts", False)),
}
#: Fields holding Jinja source (``content_sid`` is an identifier, not a template).
TEMPLATE_FIELDS = frozenset({"body", "subject", "text", "html", "voice_script", "voicemail_script"})
MAP_FIELDS = frozenset({"content_variables", "ivr_prompts"})

_CURRENCY_OF_REGION = {"MX": "MXN", "CO": "COP", "US": "USD", "PE": "PEN", "CL": "CLP"}
_PHONE_OF_REGION = {
    "MX": "+52 55 1234 5678", "CO": "+57 601 234 5678", "US": "+1 (555) 010-0199",
    "PE": "+51 1 234 5678", "CL": "+56 2 2345 6789",
}


def region_of(locale: str) -> str:
    """``es-CO`` → ``CO``; a bare language → ``""``."""
    parts = locale.replace("_", "-").split("-")
    return parts[1].upper() if len(parts) > 1 else ""


def sample_context(locale: str, variables_schema: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Realistic sample data for previews and the validation render, in the locale's currency."""
    region = region_of(locale) or "MX"
    english = locale.lower().startswith("en")
    context: dict[str, Any] = {
        "debtor": {"id": "deb-sample", "name": "María Fernanda López" if not english else "Jordan Smith",
                   "first_name": "María" if not english else "Jordan"},
        "account": {
            "id": "acc-sample", "balance": Decimal("1234.50"), "currency": _CURRENCY_OF_REGION.get(region, "USD"),
            "days_past_due": 12, "due_date": date(2025, 3, 15),
            "payment_url": "https://pay.example.com/p/acc-sample",
            # the length of a real link: the SMS segment count of a preview is the real one
            "self_service_url": "https://cad.example/s/AAAAAAAAAAAAAAAAAAAAAAAA",
            "product": "Tarjeta de crédito" if not english else "Credit card",
        },
        "creditor": {"name": "Banco Ejemplo" if not english else "Example Bank",
                     "phone": _PHONE_OF_REGION.get(region, "+1 (555) 010-0199")},
    }
    properties = (variables_schema or {}).get("properties") or {}
    variables = {name: sample_value(spec if isinstance(spec, Mapping) else {}) for name, spec in properties.items()}
    context.update(variables)
    context["variables"] = variables
    return context


def sample_value(spec: Mapping[str, Any]) -> Any:
    """A sample for one declared variable: its ``example``/``default``, else one by ``type``/``format``."""
    for key in ("example", "default"):
        if key in spec:
            return spec[key]
    kind, fmt = spec.get("type", "string"), spec.get("format")
    if fmt == "date":
        return date(2025, 3, 20)
    return {"number": Decimal("500.00"), "integer": 1, "boolean": True, "array": [], "object": {}}.get(
        str(kind), "ejemplo"
    )
