"""Time zones and public holidays, cached: both are looked up on every evaluation."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
import phonenumbers
from phonenumbers.timezone import time_zones_for_number

from shared.addresses import parsed_e164

# A number mapping to more zones than this is not geographic (toll-free, some mobile ranges):
# its "zones" say nothing about where the debtor is, so the jurisdiction's defaults apply.
MAX_PHONE_ZONES = 3


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    """A ZoneInfo by IANA name; raises ``ValueError`` for an unknown one."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


@lru_cache(maxsize=65536)
def phone_zones(phone: str) -> tuple[str, ...]:
    """IANA zones of a phone number's geography; empty when unknown or not geographic."""
    # The number intake already parsed and validated, when it is one (the E.164 text it produced).
    number = parsed_e164(phone)
    if number is None:
        try:
            number = phonenumbers.parse(phone, None)
        except phonenumbers.NumberParseException:
            return ()
    names = tuple(z for z in time_zones_for_number(number) if z != "Etc/Unknown")
    return names if len(names) <= MAX_PHONE_ZONES else ()


@lru_cache(maxsize=262144)
def midnight(tz: ZoneInfo, ordinal: int) -> int:
    """POSIX timestamp (whole seconds) of the start of a local calendar day (first instant of that date)."""
    return local_ts(tz, ordinal, 0)


def local_ts(tz: ZoneInfo, ordinal: int, seconds: int) -> int:
    """Timestamp of local wall time ``seconds`` after midnight of day ``ordinal`` (earliest if repeated).

    A wall time skipped by a DST jump maps forward by the jump, as zoneinfo does (fold=0).
    """
    base = datetime.fromordinal(ordinal) + timedelta(seconds=seconds)
    return int(base.replace(tzinfo=tz).timestamp())


def local_ordinal(tz: ZoneInfo, ts: int) -> int:
    """The local calendar day (proleptic ordinal) of an instant."""
    return datetime.fromtimestamp(ts, tz).toordinal()


@lru_cache(maxsize=1024)
def holiday_ordinals(country: str | None, subdivision: str | None, year: int) -> frozenset[int]:
    """Public holidays (as date ordinals) of a country/subdivision and year; empty when unknown."""
    if not country:
        return frozenset()
    try:
        days = holidays.country_holidays(country, subdiv=subdivision, years=year)
    except NotImplementedError:
        if subdivision is None:
            return frozenset()
        return holiday_ordinals(country, None, year)
    return frozenset(d.toordinal() for d in days)
