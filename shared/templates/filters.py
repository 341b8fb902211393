"""The filters templates may use besides Jinja's whitelisted ones: ``money``, ``date``, ``first_name``,
``payment_link``, ``self_service_link`` and ``gsm7`` (:data:`CADENCIA_FILTERS`), and the formatting
functions behind them (amounts and dates in the debtor's locale, with babel)."""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from babel.numbers import NumberPattern, get_currency_symbol, parse_pattern
from jinja2 import pass_context
from jinja2.runtime import Context

from shared.templates.models import DEFAULT_LOCALE

#: ``babel`` patterns for locales whose CLDR default differs from local usage (Colombia writes ``$ 1.234,50``).
CURRENCY_PATTERNS: dict[str, str] = {"es_CO": "¤ #,##0.00"}


@lru_cache(maxsize=256)
def babel_locale(locale: str | None) -> Locale:
    """``es-CO`` → ``Locale('es', 'CO')``; unknown or empty locales fall back to ``DEFAULT_LOCALE``.

    Cached: parsing a locale (and loading its data into a new ``Locale``) on every amount and date
    was most of a render's filter time. The ``Locale`` is shared; nothing changes it."""
    try:
        return Locale.parse((locale or DEFAULT_LOCALE).replace("-", "_"))
    except (UnknownLocaleError, ValueError):
        return Locale.parse(DEFAULT_LOCALE.replace("-", "_"))


def _normalise_spaces(text: str) -> str:
    # CLDR uses NBSP / narrow NBSP; SMS (GSM-7) and plain text want ordinary spaces.
    return text.replace("\xa0", " ").replace("\u202f", " ")


def _decimal(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise ValueError("money needs a number, not a boolean")
    try:
        return value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation as exc:
        raise ValueError(f"money needs a number, got {value!r}") from exc


#: ISO 4217 minor units where they are not 2 (active currencies). CLDR's ``digits`` are a display
#: preference that changes between releases (CLDR 46 shows COP with none); a debt is owed in the
#: currency's legal minor unit, so that is what every amount is written with.
ISO_4217_MINOR_UNITS: dict[str, int] = {
    **dict.fromkeys(("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "UYI",
                     "VND", "VUV", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
}


def minor_units(currency: str) -> int:
    """The ISO 4217 minor units of ``currency``: 2 for MXN, COP, PEN and USD; 0 for CLP."""
    return ISO_4217_MINOR_UNITS.get(currency.upper(), 2)


@lru_cache(maxsize=256)
def _currency_pattern(locale: str, digits: int, currency: str) -> tuple[NumberPattern, bool]:
    """The locale's currency pattern with ``digits`` fraction digits, and whether it still needs the
    currency at each call. Babel's ``apply`` looks the currency's name (with plural rules) and symbol
    up on every call, for a pattern that only ever uses the symbol: put the symbol in once instead."""
    loc = babel_locale(locale)
    override = CURRENCY_PATTERNS.get(str(loc))
    pattern = copy.copy(parse_pattern(override) if override else loc.currency_formats["standard"])
    pattern.frac_prec = (digits, digits)
    affixes = (*pattern.prefix, *pattern.suffix)
    if any("¤¤¤" in a for a in affixes):  # the currency's name depends on the amount (plural forms)
        return pattern, True
    symbol = get_currency_symbol(currency, loc)

    def fill(affix: str) -> str:
        return affix.replace("¤¤", currency).replace("¤", symbol)

    pattern.prefix = (fill(pattern.prefix[0]), fill(pattern.prefix[1]))
    pattern.suffix = (fill(pattern.suffix[0]), fill(pattern.suffix[1]))
    return pattern, False


def format_money(amount: Any, currency: str, locale: str | None) -> str:
    """``1234.5, "COP", "es-CO"`` → ``$ 1.234,50``; ``"USD", "en-US"`` → ``$1,234.50``.

    The amount is written exactly, always with the currency's ISO 4217 minor units, whatever the
    installed CLDR data prefers. An amount with a non-zero fraction finer than those units
    (``1.005 USD``) cannot be stated truthfully and is an error, never rounded.
    """
    value = _decimal(amount)
    if not value.is_finite():
        raise ValueError(f"money needs a finite amount, got {value}")
    code = currency.upper()
    digits = minor_units(code)
    try:
        exact = value == value.quantize(Decimal(1).scaleb(-digits))
    except InvalidOperation as exc:  # quantize raises, not rounds, past the context's 28 digits
        raise ValueError(f"money needs an amount of at most 28 digits, got {value}") from exc
    if not exact:
        raise ValueError(f"{value} has more decimals than {code} allows ({digits}); refusing to round an amount owed")
    loc = babel_locale(locale)
    pattern, per_call = _currency_pattern(str(loc), digits, code)
    return _normalise_spaces(pattern.apply(value, loc, currency=code if per_call else None, currency_digits=False))


def _as_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).date() if "T" in value else date.fromisoformat(value)
        except ValueError as exc:
            raise ValueError(f"date needs an ISO date, got {value!r}") from exc
    raise ValueError(f"date needs a date, got {type(value).__name__}")


def format_day(value: Any, style: str, locale: str | None) -> str:
    """Babel ``format_date``: ``long`` → ``15 de marzo de 2025`` (es) / ``March 15, 2025`` (en)."""
    return _normalise_spaces(format_date(_as_date(value), style, locale=babel_locale(locale)))


def first_name(value: Any) -> str:
    """The first given name: ``"MARÍA fernanda López"`` → ``"María"``; a debtor mapping's ``first_name`` wins."""
    if isinstance(value, Mapping):
        given = value.get("first_name")
        if given:
            return str(given)
        value = value.get("name", "")
    words = str(value or "").split()
    if not words:
        return ""
    word = words[0]
    return word.capitalize() if word.isupper() or word.islower() else word


def payment_link(value: Any, medium: str | None = None) -> str:
    """The account's payment URL (an account mapping or a URL), optionally tagged ``utm_medium``."""
    url = value.get("payment_url") if isinstance(value, Mapping) else value
    if not url:
        raise ValueError("the account has no payment_url")
    url = str(url)
    if urlsplit(url).scheme not in ("http", "https"):
        raise ValueError("payment links must be http(s) URLs")
    if medium:
        url += ("&" if "?" in url else "?") + f"utm_medium={medium}"
    return url


def self_service_link(value: Any) -> str:
    """The account's signed self-service page (``account.self_service_url``, set by the orchestrator).

    The orchestrator signs the link when it makes the dispatch, so the signing key stays in one
    service and every channel renders the same URL.
    """
    url = value.get("self_service_url") if isinstance(value, Mapping) else None
    if not url:
        raise ValueError("the account has no self_service_url (self-service is off in the strategy)")
    url = str(url)
    if urlsplit(url).scheme not in ("http", "https"):
        raise ValueError("self-service links must be http(s) URLs")
    return url


@pass_context
def _money_filter(ctx: Context, value: Any, currency: str | None = None, locale: str | None = None) -> str:
    if currency is None:
        account = ctx.get("account")
        currency = account.get("currency") if isinstance(account, Mapping) else None
    if not currency:
        raise ValueError("money needs a currency (pass one or set account.currency)")
    return format_money(value, currency, locale or ctx.get("locale"))


@pass_context
def _date_filter(ctx: Context, value: Any, style: str = "long", locale: str | None = None) -> str:
    if style not in ("short", "medium", "long", "full"):
        raise ValueError("date style must be short, medium, long or full")
    return format_day(value, style, locale or ctx.get("locale"))


def _gsm7_filter(value: Any) -> str:
    from shared.templates.sms import to_gsm7

    return to_gsm7(str(value))


CADENCIA_FILTERS: dict[str, Callable[..., Any]] = {
    "money": _money_filter,
    "date": _date_filter,
    "first_name": first_name,
    "payment_link": payment_link,
    # GSM-7 spelling of a value ("María" -> "Maria"), so one accented name does not make an SMS UCS-2.
    "gsm7": _gsm7_filter,
    "self_service_link": self_service_link,
}
