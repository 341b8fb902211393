"""The parsed number intake keeps for each E.164 result changes no answer: the lookup key and the
policy's time zones of every spelling are what parsing the text afresh gives."""

from __future__ import annotations

import unicodedata

import phonenumbers
from phonenumbers.timezone import time_zones_for_number

from services.orchestrator.policy.zones import MAX_PHONE_ZONES, phone_zones
from shared.addresses import PHONE_CHANNELS, AddressError, address_key, canonical_email, canonical_phone, parsed_e164

_FORMATS = (phonenumbers.PhoneNumberFormat.E164, phonenumbers.PhoneNumberFormat.INTERNATIONAL,
            phonenumbers.PhoneNumberFormat.NATIONAL, phonenumbers.PhoneNumberFormat.RFC3966)


# The functions as they were before the reuse, parsing every text they are given.
def _old_canonical_phone(raw: str, region: str | None = None) -> str:
    text = unicodedata.normalize("NFKC", raw).strip()
    if text[:9].lower() == "whatsapp:":
        text = text[9:].strip()
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise AddressError(str(exc)) from exc
    if not phonenumbers.is_valid_number(number):
        raise AddressError("not valid")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _old_address_key(channel: str, raw: str) -> str:
    if channel == "email" or (channel not in PHONE_CHANNELS and "@" in raw):
        try:
            return canonical_email(raw)
        except AddressError:
            return raw.strip().lower()
    try:
        return _old_canonical_phone(raw)
    except AddressError:
        text = unicodedata.normalize("NFKC", raw).strip()
        if text[:9].lower() == "whatsapp:":
            text = text[9:].strip()
        digits = "".join(ch for ch in text if ch.isdigit())
        return f"+{digits}" if digits else raw.strip()


def _old_phone_zones(phone: str) -> tuple[str, ...]:
    try:
        number = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return ()
    names = tuple(z for z in time_zones_for_number(number) if z != "Etc/Unknown")
    return names if len(names) <= MAX_PHONE_ZONES else ()


def _spellings() -> list[tuple[str, str | None]]:
    """Every region's example numbers of every type, written in each format, with and without the
    region, plus invalid variants (a digit short, a digit more), extensions, prefixes, full width."""
    out: list[tuple[str, str | None]] = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in (phonenumbers.PhoneNumberType.FIXED_LINE, phonenumbers.PhoneNumberType.MOBILE,
                     phonenumbers.PhoneNumberType.TOLL_FREE):
            number = phonenumbers.example_number_for_type(region, kind)
            if number is None:
                continue
            for fmt in _FORMATS:
                text = phonenumbers.format_number(number, fmt)
                out += [(text, region), (text, None), (text[:-1], region), (text + "7", region)]
            e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
            out += [(e164 + " ext. 12", region), (f"whatsapp:{e164}", None), (e164[:-1], None),
                    (unicodedata.normalize("NFKC", e164).translate({ord(c): ord(c) + 0xFEE0 for c in "+0123456789"}),
                     None)]
    out += [("55 1234 5678", "MX"), ("55 1234 5678", None), ("call me", "MX"), ("+", None), ("", "US"),
            ("+39 06 1234 5678", None), ("06 1234 5678", "IT"), ("+1 800 FLOWERS", None), ("0", "GB")]
    return out


def test_every_spelling_gets_the_old_answers_with_the_parse_reused() -> None:
    canonical_phone.cache_clear()
    address_key.cache_clear()
    phone_zones.cache_clear()
    spellings = _spellings()
    assert len(spellings) > 4000
    reused = 0
    for raw, region in spellings:
        try:
            expected: str | None = _old_canonical_phone(raw, region)
        except AddressError:
            expected = None
        try:
            got: str | None = canonical_phone(raw, region)
        except AddressError:
            got = None
        assert got == expected, (raw, region)
        for text in {raw, *([got] if got else [])}:
            # The order intake then the policy use them in: the E.164 result is known by then.
            reused += got is not None and parsed_e164(text) is not None
            assert address_key("sms", text) == _old_address_key("sms", text), text
            assert phone_zones(text) == _old_phone_zones(text), text
    assert reused > 1000  # the later calls did reuse the parse


def test_the_kept_number_is_what_parsing_its_e164_text_gives() -> None:
    for raw, region in _spellings():
        try:
            e164 = canonical_phone(raw, region)
        except AddressError:
            continue
        kept = parsed_e164(e164)
        if kept is not None:
            assert kept == phonenumbers.parse(e164, None), e164
            assert phonenumbers.is_valid_number(kept)
