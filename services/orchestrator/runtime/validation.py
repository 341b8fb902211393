"""Checks a contact request must pass beyond its JSON Schema; each failure is a rejection reason."""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from babel.numbers import list_currencies
from email_validator import EmailNotValidError, validate_email

from shared.addresses import AddressError, canonical_email, canonical_phone, region_of
from shared.events.contracts import ContactRequested, Debtor, DebtorUpdated
from shared.events.envelope import aware as aware  # ``validation.aware`` to the runtime's modules

#: Largest ``variables`` object by default (JSON bytes): template inputs are a few short values, and a
#: request carrying megabytes of them would be fanned out into dispatches no broker accepts.
MAX_VARIABLES_BYTES = 4096
ADDRESS_FIELD = {"sms": "phone", "voice": "phone", "email": "email", "whatsapp": "whatsapp"}


@lru_cache(maxsize=1)
def _currencies() -> frozenset[str]:
    return frozenset(list_currencies())


def canonical_debtor(debtor: Debtor) -> Debtor:
    """The debtor with canonical addresses (E.164, national numbers read in the debtor's country;
    e-mail trimmed with the domain lower-cased). One that is not valid is left as written, for
    :func:`problems` to reject."""
    changes = _canonical_addresses(debtor, debtor.jurisdiction)
    return debtor.model_copy(update=changes) if changes else debtor


def canonical(request: ContactRequested) -> ContactRequested:
    """The request as the ledger, the send log and suppressions will know it: canonical addresses."""
    debtor = canonical_debtor(request.debtor)
    return request if debtor is request.debtor else request.model_copy(update={"debtor": debtor})


def canonical_update(update: DebtorUpdated, jurisdiction: str | None) -> DebtorUpdated:
    """A debtor update with canonical addresses; an address that is not valid is dropped (kept as it was)."""
    changes = _canonical_addresses(update, jurisdiction, drop_invalid=True)
    return update.model_copy(update=changes) if changes else update


def _canonical_addresses(
    source: Debtor | DebtorUpdated, jurisdiction: str | None, *, drop_invalid: bool = False
) -> dict[str, str | None]:
    region = region_of(jurisdiction)
    changes: dict[str, str | None] = {}
    for name in ("phone", "whatsapp", "email"):
        value = getattr(source, name)
        if value is None:
            continue
        canonical_value = _email(value) if name == "email" else _phone(value, region)
        if canonical_value is None:
            if drop_invalid:
                changes[name] = None
            continue
        if canonical_value != value:
            changes[name] = canonical_value
    return changes


def is_e164(number: str) -> bool:
    """A valid number written in international form (``+`` and the country code), any punctuation."""
    return number.strip().startswith(("+", "＋")) and is_phone(number, None)


# Parsing a number or an address costs more than deciding a contact; a batch sees the same ones often.
@lru_cache(maxsize=65_536)
def _phone(number: str, region: str | None) -> str | None:
    """The canonical number, or None when it is not valid."""
    try:
        return canonical_phone(number, region)
    except AddressError:
        return None


@lru_cache(maxsize=65_536)
def _email(address: str) -> str | None:
    try:
        return canonical_email(address)
    except AddressError:
        return None


def is_phone(number: str, region: str | None) -> bool:
    return _phone(number, region) is not None


@lru_cache(maxsize=65_536)
def is_email(address: str) -> bool:
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError:
        return False
    return True


def is_time_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def problems(
    request: ContactRequested, jurisdictions: Iterable[str], max_variables_bytes: int = MAX_VARIABLES_BYTES
) -> list[str]:
    """Reasons to reject ``request`` (empty when it is valid). Template keys are checked by the caller."""
    found: list[str] = []
    debtor, account = request.debtor, request.account
    if request.kind == "collection" and not account.balance > 0:
        # A collection message states an amount owed; zero or negative is a data error upstream
        # ("Tu pago de -$500.00"). Notices the law requires carry no amount and are unaffected.
        found.append(f"account.balance must be greater than 0 for a collection message, got {account.balance}")
    variables_size = len(orjson.dumps(request.variables, default=str))
    if variables_size > max_variables_bytes:
        found.append(f"variables are {variables_size} bytes; the limit is {max_variables_bytes}")
    region = region_of(debtor.jurisdiction)
    for name in ("phone", "whatsapp"):
        value = getattr(debtor, name)
        if value is not None and not is_phone(value, region):
            found.append(f"debtor.{name} is not a valid phone number (E.164, or national in {region or 'its country'})")
    if debtor.email is not None and not is_email(debtor.email):
        found.append("debtor.email is not a valid e-mail address")
    known = {j.upper() for j in jurisdictions}
    if debtor.jurisdiction.upper() not in known:
        found.append(f"unknown jurisdiction {debtor.jurisdiction!r}")
    if debtor.time_zone is not None and not is_time_zone(debtor.time_zone):
        found.append(f"unknown time zone {debtor.time_zone!r}")
    if account.currency.upper() not in _currencies() or account.currency != account.currency.upper():
        found.append(f"unknown currency {account.currency!r} (ISO 4217, upper case)")
    if request.channel != "auto" and getattr(debtor, ADDRESS_FIELD[request.channel]) is None:
        found.append(f"no {ADDRESS_FIELD[request.channel]} for channel {request.channel}")
    if request.channel == "auto" and not any(getattr(debtor, f) for f in set(ADDRESS_FIELD.values())):
        found.append("the debtor has no phone, e-mail or WhatsApp address")
    not_before, expires_at = aware(request.not_before), aware(request.expires_at)
    if not_before is not None and expires_at is not None and expires_at <= not_before:
        found.append("expires_at is not after not_before")
    return found
