"""``parse_event`` and ``encode_event`` work in one pass through pydantic; what they accept, refuse
and write is what decoding to Python values first did (the reference below is the code they
replaced)."""

from __future__ import annotations

import re
from decimal import Decimal

import orjson
import pytest
from pydantic import ValidationError

from shared.events import encode_event, event_adapter, parse_event
from tests.foundation.samples import sample_events


def reference_parse(raw: bytes | str) -> object:
    return event_adapter.validate_python(orjson.loads(raw))


def reference_encode(event: object) -> bytes:
    return orjson.dumps(event.model_dump(mode="json", exclude_none=False))  # type: ignore[attr-defined]


def verdict(parse, raw: bytes | str) -> tuple[str, object]:  # type: ignore[no-untyped-def]
    try:
        return "ok", parse(raw)
    except (ValidationError, orjson.JSONDecodeError) as exc:
        return type(exc).__name__, str(exc)


REQUEST = encode_event(sample_events()[0])
BALANCE = re.search(rb'"balance":"[^"]*"', REQUEST)
assert BALANCE is not None


def with_balance(value: bytes) -> bytes:
    return REQUEST.replace(BALANCE.group(0), b'"balance":' + value)


def with_variables(text: bytes) -> bytes:
    return REQUEST.replace(b'"variables":{"campaign":"feb"}', b'"variables":' + text)


POISON = [
    b"", b"hello", b"[]", b"null", b'{"type":"cadencia.contact.requested.v1"}',
    REQUEST + b" x", REQUEST[:-1], b"\xef\xbb\xbf" + REQUEST,
    REQUEST.replace(b'"source":"cadencia"', b'"source":"cadencia\xff"'),
    REQUEST.replace(b'"source":"cadencia"', b'"source":"cadencia\\ud800"'),
    with_balance(b"NaN"), with_balance(b"1e400"), with_balance(b"true"), with_balance(b'"nan"'),
    with_balance(b"10.00005"), with_balance(b"0.30000000000000004"), with_balance(b"123456789012345.12"),
    REQUEST.replace(b'"priority":3', b'"priority":100000000000000000000000'),
    REQUEST.replace(b'"priority":3', b'"priority":"3x"'),
    REQUEST.replace(b'"specversion":"1.0"', b'"specversion":"1.0","extra":1'),
]


@pytest.mark.parametrize("raw", POISON, ids=range(len(POISON)))
def test_poison_is_refused_with_the_reason_it_always_had(raw: bytes) -> None:
    expected = verdict(reference_parse, raw)
    assert expected[0] != "ok"
    assert verdict(parse_event, raw) == expected
    assert verdict(parse_event, raw.decode("utf-8", "surrogateescape") if raw.isascii() else raw) == expected


def test_every_event_type_reads_and_writes_as_before() -> None:
    for event in sample_events():
        wire = encode_event(event)
        assert wire == reference_encode(event), event.type
        assert parse_event(wire) == reference_parse(wire) == event
        assert parse_event(wire.decode()) == event


@pytest.mark.parametrize("value", [
    b"1234.56", b"0.1", b"1e2", b"10.005", b"1234.5678", b"12345678901234.1234", b"1.0E-4", b"-0.0",
    b'"1234.50"', b'"1e2"', b"0",
])
def test_a_balance_given_as_a_number_or_text_reads_as_the_same_amount(value: bytes) -> None:
    new, old = parse_event(with_balance(value)), reference_parse(with_balance(value))
    assert new.data.account.balance == old.data.account.balance  # type: ignore[union-attr]
    assert isinstance(new.data.account.balance, Decimal)  # type: ignore[union-attr]


def test_free_form_values_read_as_before_and_large_integers_stay_integers() -> None:
    text = b'{"a":[1,2.5,"x",null,true],"b":{"c":-0.0},"d":"\\u00e9","e":1e5}'
    assert parse_event(with_variables(text)) == reference_parse(with_variables(text))
    big = parse_event(with_variables(b'{"n":100000000000000000000000}'))
    assert big.data.variables == {"n": 10**23}  # type: ignore[union-attr]
    assert encode_event(big).count(b'"n":100000000000000000000000') == 1


def test_nesting_deeper_than_the_one_pass_parser_takes_is_still_accepted() -> None:
    deep = with_variables(b'{"n":' + b"[" * 300 + b"]" * 300 + b"}")
    with pytest.raises(ValidationError):
        event_adapter.validate_json(deep)
    assert parse_event(deep) == reference_parse(deep)
