"""Filters, locale fallback, variant stability, segment math and the sandbox's limits."""

from __future__ import annotations

import re
import time
from datetime import date
from decimal import Decimal

import pytest
from babel.numbers import parse_decimal
from hypothesis import given
from hypothesis import strategies as st

from shared.events.contracts import TemplateContent, TemplatePublished
from shared.templates import (
    Limits,
    TemplateError,
    TemplateLimitError,
    build_context,
    choose_locale,
    choose_variant,
    first_name,
    format_day,
    format_money,
    locale_chain,
    minor_units,
    payment_link,
    render_dispatch,
    render_source,
    sample_context,
    sms_segments,
    steering_paths,
)


@pytest.mark.parametrize(
    ("amount", "currency", "locale", "expected"),
    [
        ("1234.5", "USD", "en-US", "$1,234.50"),
        ("1234", "USD", "en-US", "$1,234.00"),
        (Decimal("1234.50"), "COP", "es-CO", "$ 1.234,50"),
        ("99.90", "COP", "es-CO", "$ 99,90"),
        ("0.01", "COP", "es-CO", "$ 0,01"),
        ("1234", "COP", "es-CO", "$ 1.234,00"),
        (1234.5, "MXN", "es-MX", "$1,234.50"),
        ("1234", "MXN", "es-MX", "$1,234.00"),
        ("1234.5", "PEN", "es-PE", "S/ 1,234.50"),
        ("1234", "PEN", "es-PE", "S/ 1,234.00"),
        ("150000", "CLP", "es-CL", "$150.000"),
        ("150000.00", "CLP", "es-CL", "$150.000"),
    ],
)
def test_money_matches_local_usage(amount: object, currency: str, locale: str, expected: str) -> None:
    assert format_money(amount, currency, locale) == expected


#: Every currency/locale pair the seeded templates and the demo portfolio use.
MONEY_PAIRS = [("MXN", "es-MX"), ("COP", "es-CO"), ("PEN", "es-PE"), ("CLP", "es-CL"), ("USD", "en-US"),
               ("USD", "es-MX"), ("MXN", "en-US")]


def _parse_rendered(text: str, locale: str) -> Decimal:
    number = re.sub(r"[^0-9.,-]", "", text)
    return parse_decimal(number, locale=locale.replace("-", "_"), strict=True)


@given(pair=st.sampled_from(MONEY_PAIRS), cents=st.integers(min_value=0, max_value=10**13))
def test_money_renders_exactly_the_amount_it_is_given(pair: tuple[str, str], cents: int) -> None:
    currency, locale = pair
    amount = Decimal(cents).scaleb(-minor_units(currency))
    assert _parse_rendered(format_money(amount, currency, locale), locale) == amount


@pytest.mark.parametrize("amount", ["1e40", "9" * 40, "1" + "0" * 27])
def test_money_refuses_an_amount_of_more_digits_than_it_can_check_with_a_value_error(amount: str) -> None:
    """``Decimal.quantize`` raised InvalidOperation (not a ValueError) for these: the template error read
    ``InvalidOperation: [<class 'decimal.InvalidOperation'>]``."""
    with pytest.raises(ValueError, match="at most 28 digits"):
        format_money(amount, "USD", "en-US")


@pytest.mark.parametrize(("amount", "currency"), [("1.005", "USD"), ("99.901", "COP"), ("150000.5", "CLP")])
def test_money_refuses_to_round_an_amount_it_cannot_state(amount: str, currency: str) -> None:
    with pytest.raises(ValueError, match="more decimals"):
        format_money(amount, currency, "es-CO")
    with pytest.raises(TemplateError, match="more decimals"):
        render_source("{{ account.balance | money }}",
                      build_context({"account": {"balance": amount, "currency": currency}}, locale="es-CO",
                                    channel="sms"))


def test_money_filter_takes_currency_and_locale_from_the_context() -> None:
    ctx = build_context({"account": {"balance": "1234.5", "currency": "COP"}}, locale="es-CO", channel="sms")
    assert render_source("{{ account.balance | money }}", ctx) == "$ 1.234,50"
    assert render_source("{{ 10 | money('USD', 'en-US') }}", ctx) == "$10.00"


def test_date_filter_is_locale_aware() -> None:
    assert format_day(date(2025, 3, 15), "long", "es-MX") == "15 de marzo de 2025"
    assert format_day("2025-03-15", "long", "en-US") == "March 15, 2025"
    ctx = build_context({"account": {"due_date": "2025-03-15"}}, locale="es-CO", channel="sms")
    assert render_source("{{ account.due_date | date('short') }}", ctx) == "15/03/25"


def test_first_name_and_payment_link() -> None:
    assert first_name("MARÍA fernanda López") == "María"
    assert first_name({"name": "jordan smith"}) == "Jordan"
    assert first_name({"first_name": "Ana", "name": "X Y"}) == "Ana"
    assert payment_link({"payment_url": "https://pay.example/x"}) == "https://pay.example/x"
    assert payment_link("https://pay.example/x?a=1", "sms") == "https://pay.example/x?a=1&utm_medium=sms"
    with pytest.raises(ValueError):
        payment_link("javascript:alert(1)")
    with pytest.raises(ValueError):
        payment_link({})


def test_html_is_autoescaped_and_text_is_not() -> None:
    ctx = {"creditor": {"name": "<b>A&B</b>"}}
    assert render_source("{{ creditor.name }}", ctx, html=True) == "&lt;b&gt;A&amp;B&lt;/b&gt;"
    assert render_source("{{ creditor.name }}", ctx) == "<b>A&B</b>"


def test_undefined_variables_fail_loudly() -> None:
    with pytest.raises(TemplateError) as err:
        render_source("Hola {{ debtor.nickname }}", {"debtor": {}})
    assert err.value.code == "undefined"


def test_locale_fallback_exact_then_language_then_default() -> None:
    assert locale_chain("es-CO") == ["es-CO", "es", "es-MX"]
    assert choose_locale("es-CO", {"es-CO", "es-MX"}) == "es-CO"
    assert choose_locale("es-CO", {"es", "es-MX"}) == "es"
    assert choose_locale("es-PE", {"es-MX", "en-US"}) == "es-MX"
    assert choose_locale("en-GB", {"es-MX", "en-US"}) == "en-US"
    assert choose_locale("fr-FR", {"es-MX", "en-US"}) == "es-MX"
    assert choose_locale("fr-FR", {"en-US"}, default="en-US") == "en-US"
    assert choose_locale("fr-FR", {"en-US"}) is None


def test_variant_choice_is_stable_and_follows_weights() -> None:
    weights = {"A": 1.0, "B": 1.0}
    picks = [choose_variant("reminder_early", f"debtor-{i}", weights) for i in range(2000)]
    assert picks == [choose_variant("reminder_early", f"debtor-{i}", weights) for i in range(2000)]
    assert 850 < picks.count("A") < 1150
    skewed = [choose_variant("reminder_early", f"debtor-{i}", {"A": 9, "B": 1}) for i in range(2000)]
    assert 100 < skewed.count("B") < 300
    assert {choose_variant("k", f"d{i}", {"A": 1, "B": 0}) for i in range(100)} == {"A"}
    # sha256-based: a fixed, documented value, identical across processes and Python versions.
    assert choose_variant("reminder_early", "debtor-1", weights) == picks[1]


@pytest.mark.parametrize(
    ("text", "encoding", "units", "segments"),
    [
        ("a" * 160, "GSM-7", 160, 1),
        ("a" * 161, "GSM-7", 161, 2),
        ("a" * 306, "GSM-7", 306, 2),
        ("a" * 307, "GSM-7", 307, 3),
        ("€" * 80, "GSM-7", 160, 1),
        ("[" * 81, "GSM-7", 162, 2),
        ("a" * 152 + "€", "GSM-7", 154, 1),
        ("a" * 159 + "€", "GSM-7", 161, 2),
        # 152 septets then an escape pair that must not be split: segment 2 starts with it.
        ("a" * 152 + "{" + "a" * 152, "GSM-7", 306, 3),
        ("ñandú", "UCS-2", 5, 1),
        ("á" * 70, "UCS-2", 70, 1),
        ("í" * 71, "UCS-2", 71, 2),
        ("ó" * 134, "UCS-2", 134, 2),
        ("ú" * 135, "UCS-2", 135, 3),
        ("é" * 160, "GSM-7", 160, 1),
        ("", "GSM-7", 0, 0),
    ],
)
def test_segment_math(text: str, encoding: str, units: int, segments: int) -> None:
    info = sms_segments(text)
    assert (info.encoding, info.units, info.segments) == (encoding, units, segments)


def test_ucs2_reports_the_characters_that_forced_it() -> None:
    assert sms_segments("Responde BAJA para no recibir más SMS").non_gsm == ("á",)


HOSTILE = [
    "{{ ''.__class__.__mro__ }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ self.__init__.__globals__ }}",
    "{{ debtor.__class__ }}",
    "{% for i in range(10**9) %}x{% endfor %}",
    "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}",
    "{% for i in range(10000) %}{{ 'x' * 100 }}{% endfor %}",
    "{{ 'a' * 10**8 }}",
    "{{ 'a'.ljust(10**8) }}",
    "{{ '%099999999d' % 1 }}",
    "{{ 2 ** 100000000 }}",
    "{{ [1] * 10**9 }}",
    "{{ 'x' | center(10**8) }}",
    "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
]


@pytest.mark.parametrize("source", HOSTILE)
def test_sandbox_escapes_and_resource_abuse_are_stopped(source: str) -> None:
    # Unstopped, these run forever or exhaust memory (the test's own timeout would end it).
    with pytest.raises(TemplateError):
        render_source(source, {"debtor": {"name": "x"}}, limits=Limits(time_limit=0.3))


def test_source_size_is_limited() -> None:
    with pytest.raises(TemplateLimitError):
        render_source("x" * 30_000, {})


def test_render_dispatch_renders_every_field_of_the_channel() -> None:
    template = TemplatePublished(
        key="reminder_early", version=3, channel="email", locale="es-CO", variant="B",
        content=TemplateContent(subject="{{ creditor.name }}: {{ account.balance | money }}",
                                text="Hola {{ debtor | first_name }}", html="<p>{{ debtor.name }}</p>"),
        published_at="2025-01-01T00:00:00Z",
    )
    data = {
        "debtor": {"id": "d1", "name": "Ana <Gómez>"},
        "account": {"id": "a1", "balance": "99.9", "currency": "COP"},
        "creditor": {"name": "Banco"},
    }
    message = render_dispatch(template, data)
    assert (message.key, message.version, message.variant) == ("reminder_early", 3, "B")
    assert message.subject == "Banco: $ 99,90"
    assert message.text == "Hola Ana"
    assert message.html == "<p>Ana &lt;Gómez&gt;</p>"


def test_sample_context_uses_the_locale_currency() -> None:
    assert sample_context("es-CO")["account"]["currency"] == "COP"
    assert sample_context("en-US")["account"]["currency"] == "USD"


class _Slow:
    """A context object whose attribute burns CPU: a straight-line template (no loop) that reads it
    often runs past the time limit one expression at a time."""

    @property
    def value(self) -> str:
        deadline = time.thread_time() + 0.05
        while time.thread_time() < deadline:
            pass
        return "x"


def test_a_straight_line_template_is_still_held_to_every_limit() -> None:
    # Straight-line templates (no loop, macro or set) run without the line trace; their limits hold.
    limits = Limits(time_limit=0.2, max_output_chars=100)
    with pytest.raises(TemplateLimitError, match="took longer"):
        render_source("{{ slow.value }}" * 40, {"slow": _Slow()}, limits=limits)
    with pytest.raises(TemplateLimitError, match="output is longer"):
        render_source("{{ note }}{{ note }}", {"note": "x" * 60}, limits=limits)
    with pytest.raises(TemplateLimitError, match="string larger"):
        render_source("{% if note %}yes{% endif %}", {"note": "x" * 101}, limits=limits)
    assert render_source("{% if note %}{{ note | upper }}{% endif %}", {"note": "ok"}, limits=limits) == "OK"


def test_the_values_a_template_steers_by_are_the_ones_its_conditions_loops_and_arguments_read() -> None:
    """``steering_paths``: what decides which branch runs or what a filter is given, not what is only shown."""
    source = (
        "{{ debtor.first_name }} {{ account.balance | money }} {{ account | payment_link(medium) }}"
        "{% if account.days_past_due > 60 and account['status'] != 'paid' %}{{ account.due_date | date }}{% endif %}"
        "{{ 'hoy' if promise.amount else '' }}{% for i in installments if i.due %}{{ i.amount }}{% endfor %}"
        "{{ creditor.name | truncate(limit.chars) }}"
    )
    assert steering_paths(source) == {
        ("account", "days_past_due"), ("account", "status"), ("promise", "amount"), ("installments",), ("i", "due"),
        ("medium",), ("limit", "chars"),
    }
    assert steering_paths("{{ creditor.name }}: {{ account.balance | money }}") == frozenset()
    assert steering_paths("{% if %}") == frozenset()  # does not parse: fails for every context alike
