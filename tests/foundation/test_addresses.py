"""Canonical addresses: however a number or e-mail was written, one spelling is stored and compared."""

from __future__ import annotations

import pytest

from shared.addresses import AddressError, address_key, canonical_email, canonical_phone, region_of
from shared.channels.models import bare_address


@pytest.mark.parametrize(
    ("written", "region"),
    [
        ("55 1234 5678", "MX"),  # national, read in the debtor's country
        ("+52 (55) 1234-5678", None),
        ("+52-55-1234-5678", None),
        ("+52.55.1234.5678", None),
        ("+52 55 1234 5678 ", None),  # trailing space
        ("＋５２ ５５ １２３４ ５６７８", None),  # full-width digits and plus
        ("whatsapp:+525512345678", None),
        ("(55) 1234-5678", "MX"),
    ],
)
def test_mexican_spellings_are_one_e164_number(written: str, region: str | None) -> None:
    assert canonical_phone(written, region) == "+525512345678"


def test_national_formats_use_the_region_and_fail_without_it() -> None:
    assert canonical_phone("300 123 4567", "CO") == "+573001234567"
    assert canonical_phone("(617) 555-0100", "US") == "+16175550100"
    with pytest.raises(AddressError):
        canonical_phone("55 1234 5678")
    with pytest.raises(AddressError):
        canonical_phone("+52 55 1234", None)  # too short
    with pytest.raises(AddressError):
        canonical_phone("call me", "MX")


def test_email_is_trimmed_with_the_domain_lower_cased() -> None:
    assert canonical_email("  Ana.Lopez@Example.COM ") == "Ana.Lopez@example.com"
    for bad in ("no-at-sign", "@example.com", "ana@", "ana lopez@example.com"):
        with pytest.raises(AddressError):
            canonical_email(bad)


def test_lookup_keys_never_fail_and_agree_with_the_canonical_form() -> None:
    assert address_key("sms", "525512345678") == "+525512345678"  # digits-only rows of old suppressions
    assert address_key("whatsapp", "whatsapp:+52 55 1234 5678") == "+525512345678"
    assert address_key("email", "Ana@Example.com ") == "Ana@example.com"
    assert address_key("sms", "not a number") == "not a number"
    assert bare_address("whatsapp:+52 (55) 1234-5678") == "+525512345678"
    assert bare_address("Ana@EXAMPLE.com") == "Ana@example.com"


def test_region_of_a_jurisdiction() -> None:
    assert region_of("US-MA") == "US" and region_of("mx") == "MX"
    assert region_of("default") is None and region_of(None) is None
