"""The self-service page's words (Spanish and English) and its HTML (server-rendered, no script).

No script, no external asset, no cookie: the page works on any phone, leaks nothing to third
parties and is readable by screen readers (labels, fieldsets, an alert role on errors).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

TEXT: dict[str, dict[str, str]] = {
    "es": {
        "title": "Tu cuenta con {creditor}",
        "balance": "Saldo pendiente",
        "account": "Cuenta",
        "pay_now": "Pagar ahora",
        "pay_hint": "Te llevamos a la página de pago de {creditor}.",
        "promise": "Prometer un pago",
        "promise_hint": "Elige una fecha y un monto; dejaremos de contactarte por cobranza hasta esa fecha.",
        "date": "Fecha de pago",
        "amount": "Monto",
        "amount_hint": "Entre {low} y {high}.",
        "date_hint": "Entre el {first} y el {last}.",
        "plan": "Elegir un plan de pagos",
        "plan_hint": "Divide tu saldo en pagos iguales cada {days} días.",
        "plan_option": "{count} pagos de {amount}",
        "plan_option_uneven": "{count} pagos: el primero de {first}, luego de {amount}",
        "first_date": "Fecha del primer pago",
        "continue": "Continuar",
        "review": "Revisa tu acuerdo",
        "schedule": "Calendario de pagos",
        "due": "Vence",
        "total": "Total",
        "name": "Escribe tu nombre completo para firmar",
        "agree": "Acepto pagar según este calendario y entiendo que este acuerdo queda registrado con "
                 "la fecha, la hora y mi dirección IP.",
        "confirm": "Firmar y confirmar",
        "back": "Volver",
        "done": "Acuerdo confirmado",
        "done_hint": "Gracias, {name}. Te enviaremos una confirmación. Puedes descargar tu acuerdo firmado.",
        "download": "Descargar acuerdo firmado (PDF)",
        "paid": "Esta cuenta ya está pagada. Gracias.",
        "unavailable": "Esta cuenta no admite acuerdos en línea ahora. Comunícate con {creditor}.",
        "expired": "Este enlace venció. Pide uno nuevo respondiendo al mensaje que recibiste.",
        "invalid": "Este enlace no es válido.",
        "errors": "Revisa lo siguiente:",
        "date_invalid": "Escribe una fecha válida.",
        "date_range": "La fecha debe estar entre el {first} y el {last}.",
        "amount_invalid": "Escribe un monto válido.",
        "amount_range": "El monto debe estar entre {low} y {high}.",
        "plan_invalid": "Elige uno de los planes ofrecidos.",
        "choice_invalid": "Elige una opción.",
        "name_mismatch": "Escribe tu nombre tal como aparece en tu cuenta.",
        "agree_missing": "Marca la casilla para aceptar el acuerdo.",
        "privacy": "Esta página no usa cookies ni rastreadores.",
        "pdf_title": "Acuerdo de pago",
        "pdf_promise": "Promesa de pago",
        "pdf_plan": "Plan de pagos en {count} cuotas",
        "pdf_creditor": "Acreedor",
        "pdf_debtor": "Deudor",
        "pdf_signed_by": "Firmado por (nombre escrito)",
        "pdf_signed_at": "Fecha y hora de la firma",
        "pdf_ip": "Dirección IP",
        "pdf_hash": "SHA-256 de los términos",
        "pdf_seal": "Sello de Cadencia (HMAC-SHA256)",
        "pdf_agreement": "Acuerdo",
        "pdf_terms": "Términos",
    },
    "en": {
        "title": "Your account with {creditor}",
        "balance": "Balance due",
        "account": "Account",
        "pay_now": "Pay now",
        "pay_hint": "You will be taken to {creditor}'s payment page.",
        "promise": "Promise a payment",
        "promise_hint": "Choose a date and an amount; we will not contact you about this debt until then.",
        "date": "Payment date",
        "amount": "Amount",
        "amount_hint": "Between {low} and {high}.",
        "date_hint": "Between {first} and {last}.",
        "plan": "Choose a payment plan",
        "plan_hint": "Split your balance into equal payments every {days} days.",
        "plan_option": "{count} payments of {amount}",
        "plan_option_uneven": "{count} payments: the first of {first}, then {amount} each",
        "first_date": "First payment date",
        "continue": "Continue",
        "review": "Review your agreement",
        "schedule": "Payment schedule",
        "due": "Due",
        "total": "Total",
        "name": "Type your full name to sign",
        "agree": "I agree to pay on this schedule and understand this agreement is recorded with the date, "
                 "the time and my IP address.",
        "confirm": "Sign and confirm",
        "back": "Back",
        "done": "Agreement confirmed",
        "done_hint": "Thank you, {name}. We will send you a confirmation. You can download your signed agreement.",
        "download": "Download signed agreement (PDF)",
        "paid": "This account is already paid. Thank you.",
        "unavailable": "This account cannot take an online arrangement now. Please contact {creditor}.",
        "expired": "This link has expired. Reply to the message you received to get a new one.",
        "invalid": "This link is not valid.",
        "errors": "Please check the following:",
        "date_invalid": "Enter a valid date.",
        "date_range": "The date must be between {first} and {last}.",
        "amount_invalid": "Enter a valid amount.",
        "amount_range": "The amount must be between {low} and {high}.",
        "plan_invalid": "Choose one of the plans offered.",
        "choice_invalid": "Choose an option.",
        "name_mismatch": "Type your name as it appears on your account.",
        "agree_missing": "Tick the box to accept the agreement.",
        "privacy": "This page uses no cookies and no trackers.",
        "pdf_title": "Payment agreement",
        "pdf_promise": "Promise to pay",
        "pdf_plan": "Payment plan in {count} instalments",
        "pdf_creditor": "Creditor",
        "pdf_debtor": "Debtor",
        "pdf_signed_by": "Signed by (typed name)",
        "pdf_signed_at": "Signed at",
        "pdf_ip": "IP address",
        "pdf_hash": "SHA-256 of the terms",
        "pdf_seal": "Cadencia seal (HMAC-SHA256)",
        "pdf_agreement": "Agreement",
        "pdf_terms": "Terms",
    },
}

#: Sent with every page: nothing cached, nothing embedded elsewhere, no referrer, no script.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Robots-Tag": "noindex, nofollow",
}


def language(locale: str | None) -> str:
    return "en" if (locale or "").lower().startswith("en") else "es"


class Words:
    """``words("amount_range", low=..., high=...)`` in one language."""

    def __init__(self, lang: str) -> None:
        self.lang = lang
        self.table = TEXT[lang]

    def __call__(self, key: str, **params: Any) -> str:
        return self.table[key].format(**params)


@lru_cache(maxsize=1)
def environment() -> Environment:
    return Environment(loader=FileSystemLoader(Path(__file__).parent / "html"),
                       autoescape=select_autoescape(default=True), trim_blocks=True, lstrip_blocks=True)


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)
