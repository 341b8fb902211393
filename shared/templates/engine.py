"""Sandboxed rendering: Jinja2 ``ImmutableSandboxedEnvironment``, ``StrictUndefined``, size and time limits.

Autoescape is on only for HTML (email ``html``); every other field is plain text. Templates reach
nothing but the context they are given and the filters below (``money``, ``date``, ``first_name``,
``payment_link``, ``self_service_link`` and a whitelist of Jinja's own). A render is stopped when it runs longer than
``Limits.time_limit``, produces more than ``Limits.max_output_chars`` or builds a string that large.
"""

from __future__ import annotations

import copy
import operator
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from babel.numbers import NumberPattern, parse_pattern
from jinja2 import StrictUndefined, Template, nodes, pass_context
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from shared.templates.models import DEFAULT_LIMITS, DEFAULT_LOCALE, Limits

#: Jinja's built-in filters that are kept; the rest (``center``, ``indent``, ``format``, ``wordwrap``,
#: ``xmlattr``, ``pprint``...) can inflate output or are not needed in messages.
SAFE_BUILTIN_FILTERS = frozenset({
    "abs", "capitalize", "default", "d", "e", "escape", "first", "float", "int", "join", "last",
    "length", "count", "list", "lower", "upper", "title", "trim", "truncate", "replace", "round",
    "safe", "string", "striptags", "sum", "urlencode", "min", "max", "sort", "unique", "batch",
    "select", "reject", "selectattr", "rejectattr", "map", "dictsort", "reverse", "slice", "wordcount",
})
#: String methods that take a width and can allocate arbitrarily much.
_PADDING_METHODS = frozenset({"ljust", "rjust", "center", "zfill", "expandtabs", "format", "format_map"})
#: ``babel`` patterns for locales whose CLDR default differs from local usage (Colombia writes ``$ 1.234,50``).
CURRENCY_PATTERNS: dict[str, str] = {"es_CO": "¤ #,##0.00"}


class TemplateError(Exception):
    """A template could not be compiled or rendered; ``code`` is the finding code it maps to."""

    def __init__(self, message: str, code: str = "render_error", line: int | None = None) -> None:
        super().__init__(message)
        self.message, self.code, self.line = message, code, line


class TemplateLimitError(TemplateError):
    """A render was stopped by a size or time limit."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message, "limit_exceeded", line)


# --- filters ----------------------------------------------------------------------------------


def babel_locale(locale: str | None) -> Locale:
    """``es-CO`` → ``Locale('es', 'CO')``; unknown or empty locales fall back to ``DEFAULT_LOCALE``."""
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
def _currency_pattern(locale: str, digits: int) -> NumberPattern:
    loc = babel_locale(locale)
    override = CURRENCY_PATTERNS.get(str(loc))
    pattern = copy.copy(parse_pattern(override) if override else loc.currency_formats["standard"])
    pattern.frac_prec = (digits, digits)
    return pattern


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
    if value != value.quantize(Decimal(1).scaleb(-digits)):
        raise ValueError(f"{value} has more decimals than {code} allows ({digits}); refusing to round an amount owed")
    pattern = _currency_pattern(str(babel_locale(locale)), digits)
    return _normalise_spaces(pattern.apply(value, babel_locale(locale), currency=code, currency_digits=False))


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


# --- the sandbox -------------------------------------------------------------------------------


class CadenciaSandbox(ImmutableSandboxedEnvironment):
    """No internals, no mutation of the context's objects, no arithmetic that allocates without bound."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def __init__(self, *, html: bool, limits: Limits) -> None:
        super().__init__(autoescape=html, undefined=StrictUndefined, keep_trailing_newline=False)
        self.limits = limits
        self.filters = {k: v for k, v in self.filters.items() if k in SAFE_BUILTIN_FILTERS}
        self.filters.update(CADENCIA_FILTERS)
        self.tests = dict(self.tests)
        self.globals = {"range": self._range}

    def _range(self, *args: int) -> range:
        rng = range(*args)
        if len(rng) > self.limits.max_range:
            raise TemplateLimitError(f"range() is limited to {self.limits.max_range} items")
        return rng

    def _check_size(self, value: Any) -> Any:
        if isinstance(value, str | list | tuple) and len(value) > self.limits.max_output_chars:
            raise TemplateLimitError(f"a value larger than {self.limits.max_output_chars} items was built")
        return value

    def call_binop(self, context: Context, operator_: str, left: Any, right: Any) -> Any:
        if operator_ == "**":
            big_exponent = isinstance(right, int | float) and abs(right) > 64
            if big_exponent or isinstance(left, int | float) and abs(left) > 10**9:
                raise SecurityError("exponent too large")
            return operator.pow(left, right)
        if operator_ == "%" and isinstance(left, str):
            raise SecurityError("printf-style formatting is not available; use filters")
        if operator_ == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(times, int):
                    if len(seq) * times > self.limits.max_output_chars:
                        raise TemplateLimitError("repetition would exceed the output limit")
        if operator_ == "+" and isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
            if len(left) + len(right) > self.limits.max_output_chars:
                raise TemplateLimitError("concatenation would exceed the output limit")
        return self._check_size(super().call_binop(context, operator_, left, right))

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        if getattr(__obj, "__name__", "") in _PADDING_METHODS and isinstance(getattr(__obj, "__self__", None), str):
            raise SecurityError(f"str.{__obj.__name__}() is not available in templates")
        return __self._check_size(super().call(__context, __obj, *args, **kwargs))


@lru_cache(maxsize=8)
def environment(html: bool = False, limits: Limits = DEFAULT_LIMITS) -> CadenciaSandbox:
    """The shared sandbox for plain-text (``html=False``) or HTML fields."""
    return CadenciaSandbox(html=html, limits=limits)


@lru_cache(maxsize=1024)
def _compile(source: str, html: bool, limits: Limits) -> Template:
    return environment(html, limits).from_string(source)


def compile_template(source: str, *, html: bool = False, limits: Limits = DEFAULT_LIMITS) -> Template:
    """Compile (cached by source) after checking the source size; raises ``TemplateError`` on syntax errors."""
    from jinja2 import TemplateSyntaxError

    if len(source) > limits.max_source_chars:
        raise TemplateLimitError(f"template source is longer than {limits.max_source_chars} characters")
    try:
        return _compile(source, html, limits)
    except TemplateSyntaxError as exc:
        raise TemplateError(exc.message or "syntax error", "syntax", exc.lineno) from exc


def parse_template(source: str, *, html: bool = False, limits: Limits = DEFAULT_LIMITS) -> nodes.Template:
    """The Jinja AST of ``source`` (for variable and safety analysis); raises ``TemplateSyntaxError``."""
    return environment(html, limits).parse(source)


class _Watchdog:
    """Stops template code that runs too long or holds an oversized string, via a trace function.

    Only frames compiled from templates (``<template>``) are traced line by line, so the cost falls
    on template code alone; the previous trace function (a debugger, coverage) is restored after.
    """

    def __init__(self, limits: Limits, template: Template) -> None:
        self.limits, self.template = limits, template
        # CPU time of this thread, not wall time: a runaway template burns CPU, while a busy machine
        # (or a first load of a locale's CLDR data from disk) must not fail a legitimate render.
        self.deadline = time.thread_time() + limits.time_limit

    def _local(self, frame: FrameType, event: str, arg: Any) -> Any:
        if time.thread_time() > self.deadline:
            raise TemplateLimitError(f"rendering took longer than {self.limits.time_limit}s", self._line(frame))
        for value in frame.f_locals.values():
            if isinstance(value, str) and len(value) > self.limits.max_output_chars:
                raise TemplateLimitError("a string larger than the output limit was built", self._line(frame))
        return self._local

    def _line(self, frame: FrameType) -> int | None:
        try:
            return self.template.get_corresponding_lineno(frame.f_lineno)
        except Exception:  # line mapping is a nicety
            return None

    def _global(self, frame: FrameType, event: str, arg: Any) -> Any:
        if frame.f_code.co_filename == "<template>":
            return self._local(frame, event, arg)
        return None

    def run(self, chunks: Iterator[str]) -> str:
        previous = sys.gettrace()
        sys.settrace(self._global)
        try:
            out: list[str] = []
            size = 0
            for chunk in chunks:
                size += len(chunk)
                if size > self.limits.max_output_chars:
                    raise TemplateLimitError(f"output is longer than {self.limits.max_output_chars} characters")
                out.append(chunk)
            return "".join(out)
        finally:
            sys.settrace(previous)


def render_source(
    source: str, context: Mapping[str, Any], *, html: bool = False, limits: Limits = DEFAULT_LIMITS
) -> str:
    """Render one field. Raises ``TemplateLimitError`` when stopped, ``TemplateError`` for any other failure."""
    template = compile_template(source, html=html, limits=limits)
    try:
        return _Watchdog(limits, template).run(template.generate(dict(context)))
    except TemplateError:
        raise
    except SecurityError as exc:
        raise TemplateError(f"not allowed: {exc}", "unsafe") from exc
    except RecursionError as exc:
        raise TemplateLimitError("recursion too deep") from exc
    except MemoryError as exc:
        raise TemplateLimitError("out of memory") from exc
    except Exception as exc:  # undefined variables, filter errors: the template is at fault
        raise TemplateError(f"{type(exc).__name__}: {exc}", _error_code(exc), _template_line(exc)) from exc


def _error_code(exc: Exception) -> str:
    from jinja2 import UndefinedError

    return "undefined" if isinstance(exc, UndefinedError) else "render_error"


def _template_line(exc: BaseException) -> int | None:
    tb = exc.__traceback__
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
