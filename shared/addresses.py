"""Canonical contact addresses: E.164 phone numbers, e-mail with a trimmed, lower-cased domain.

Every service stores, compares and sends addresses in this form only (docs/internals.md: lawful window), so an opt-out
matches however the number was first written: ``55 1234 5678`` given for a Mexican debtor,
``+52 (55) 1234-5678``, ``+52.55.1234.5678``, full-width digits and ``whatsapp:+525512345678`` are
all ``+525512345678``.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache

import phonenumbers

PHONE_CHANNELS = frozenset({"sms", "voice", "whatsapp"})
WHATSAPP_PREFIX = "whatsapp:"


class AddressError(ValueError):
    """An address that is not a valid phone number or e-mail address."""


def region_of(jurisdiction: str | None) -> str | None:
    """The ISO 3166 country a jurisdiction code names (``US-MA`` → ``US``); None for ``default``."""
    country = (jurisdiction or "").strip().upper().split("-", 1)[0]
    return country if len(country) == 2 and country.isalpha() else None


def _text(raw: str) -> str:
    # NFKC turns full-width digits and signs (＋５２…) into ASCII ones.
    text = unicodedata.normalize("NFKC", raw).strip()
    if text[: len(WHATSAPP_PREFIX)].lower() == WHATSAPP_PREFIX:
        text = text[len(WHATSAPP_PREFIX):].strip()
    return text


#: E.164 results of :func:`canonical_phone` → their parsed number as ``phonenumbers.parse`` reads the
#: E.164 text (no extension, no raw input), bounded, oldest first out. A request's number is parsed
#: once at intake; the lookup key (``address_key``) and the policy's time zones (``parsed_e164``) then
#: reuse it instead of parsing and validating the E.164 text again.
_VALID_E164: dict[str, phonenumbers.PhoneNumber] = {}
_VALID_E164_MAX = 65536


def _remember(e164: str, number: phonenumbers.PhoneNumber) -> None:
    if len(_VALID_E164) >= _VALID_E164_MAX:
        try:
            del _VALID_E164[next(iter(_VALID_E164))]
        except (KeyError, RuntimeError, StopIteration):  # another thread evicted it first
            pass
    # What parsing the E.164 text gives: country code, national number and its leading zeros only.
    _VALID_E164[e164] = phonenumbers.PhoneNumber(
        country_code=number.country_code, national_number=number.national_number,
        italian_leading_zero=number.italian_leading_zero, number_of_leading_zeros=number.number_of_leading_zeros)


def parsed_e164(e164: str) -> phonenumbers.PhoneNumber | None:
    """The parsed number of an E.164 text :func:`canonical_phone` returned recently; None otherwise."""
    return _VALID_E164.get(e164)


@lru_cache(maxsize=65536)
def canonical_phone(raw: str, region: str | None = None) -> str:
    """The E.164 form of a phone number written any usual way; a national number is read as one of
    ``region`` (the debtor's country). Raises :class:`AddressError` when it is not a valid number."""
    if raw in _VALID_E164:
        # Already canonical (and valid): a "+" number is read the same whatever the region.
        return raw
    text = _text(raw)
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise AddressError(f"not a phone number: {exc}") from exc
    if not phonenumbers.is_valid_number(number):
        raise AddressError("not a valid phone number" + ("" if text.startswith("+") else f" in {region or '?'}"))
    e164 = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    _remember(e164, number)
    return e164


def canonical_email(raw: str) -> str:
    """The address trimmed, with its domain lower-cased (the local part is the mailbox owner's)."""
    text = unicodedata.normalize("NFKC", raw).strip()
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain or any(ch.isspace() for ch in text):
        raise AddressError("not an e-mail address")
    return f"{local}@{domain.lower()}"


@lru_cache(maxsize=65536)
def address_key(channel: str, raw: str) -> str:
    """The canonical form for lookups, never failing: an address that cannot be parsed (it was never
    valid, or is national without a region) falls back to ``+digits`` / a lower-cased e-mail, so
    lookups of stored rows still match."""
    if channel == "email" or (channel not in PHONE_CHANNELS and "@" in raw):
        try:
            return canonical_email(raw)
        except AddressError:
            return raw.strip().lower()
    try:
        return canonical_phone(raw)
    except AddressError:
        digits = "".join(ch for ch in _text(raw) if ch.isdigit())
        return f"+{digits}" if digits else raw.strip()
