"""What a debtor may choose on the page and the exact terms they sign (pure: no clock, no I/O).

Amounts are exact in the currency's ISO 4217 minor units; a plan splits the balance into equal
instalments and the first one carries the remainder, so the instalments always sum to the balance.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Any, Literal

from services.orchestrator.runtime.strategy import SelfService
from shared.templates import minor_units

Choice = Literal["promise", "plan"]


class TermsError(ValueError):
    """A choice outside what the strategy allows; ``field`` names the form field, ``code`` the message."""

    def __init__(self, field_name: str, code: str, **params: Any) -> None:
        super().__init__(f"{field_name}: {code}")
        self.field, self.code, self.params = field_name, code, params


@dataclass(frozen=True)
class Instalment:
    due_date: date
    amount: Decimal


@dataclass(frozen=True)
class Limits:
    """The promise window and amounts, and the plans on offer, for one balance on one local day."""

    currency: str
    balance: Decimal
    first_date: date
    last_date: date
    min_amount: Decimal
    plan_counts: tuple[int, ...] = ()
    interval_days: int = 30


@dataclass(frozen=True)
class Terms:
    """Everything the debtor agrees to; its canonical JSON is hashed into the signed agreement."""

    choice: Choice
    creditor: str
    debtor_id: str
    debtor_name: str
    account_id: str
    currency: str
    balance: Decimal
    locale: str
    instalments: tuple[Instalment, ...] = field(default_factory=tuple)

    @property
    def total(self) -> Decimal:
        return sum((i.amount for i in self.instalments), Decimal(0))

    @property
    def final_date(self) -> date:
        return max(i.due_date for i in self.instalments)

    def canonical(self) -> bytes:
        data = asdict(self)
        data["instalments"] = [{"due_date": i.due_date.isoformat(), "amount": str(i.amount)} for i in self.instalments]
        data["balance"] = str(self.balance)
        return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()

    def digest(self) -> str:
        return hashlib.sha256(self.canonical()).hexdigest()


def quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-minor_units(currency))


def limits(config: SelfService, balance: Decimal, currency: str, today: date) -> Limits:
    q = quantum(currency)
    min_amount = max((balance * config.min_promise_share).quantize(q, rounding=ROUND_DOWN), q)
    counts: tuple[int, ...] = ()
    interval = 30
    if config.plans is not None:
        offer = config.plans
        interval = offer.interval_days
        counts = tuple(
            n for n in range(offer.min_instalments, offer.max_instalments + 1)
            if split(balance, currency, n)[-1] >= max(offer.min_instalment, q)
        )
    return Limits(currency=currency, balance=balance, first_date=today + timedelta(days=1),
                  last_date=today + timedelta(days=config.max_promise_days), min_amount=min(min_amount, balance),
                  plan_counts=counts, interval_days=interval)


def split(balance: Decimal, currency: str, count: int) -> list[Decimal]:
    """``count`` instalments summing exactly to ``balance``; the first carries the remainder."""
    q = quantum(currency)
    units = int((balance / q).to_integral_value())
    base, remainder = divmod(units, count)
    return [q * (base + remainder)] + [q * base] * (count - 1)


def parse_amount(text: str, currency: str) -> Decimal:
    cleaned = "".join(ch for ch in text if ch.isdigit() or ch in ".,")
    if "," in cleaned and "." not in cleaned:
        cleaned = cleaned.replace(",", ".")
    cleaned = cleaned.replace(",", "")
    try:
        amount = Decimal(cleaned)
        # quantize raises, not rounds, for a number of more digits than the context holds (28)
        exact = amount.is_finite() and amount == amount.quantize(quantum(currency))
    except InvalidOperation as exc:
        raise TermsError("amount", "amount_invalid") from exc
    if not exact:
        raise TermsError("amount", "amount_invalid")
    return amount


def parse_date(text: str, field_name: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError as exc:
        raise TermsError(field_name, "date_invalid") from exc


def check_date(value: date, lim: Limits, field_name: str) -> date:
    if not lim.first_date <= value <= lim.last_date:
        raise TermsError(field_name, "date_range", first=lim.first_date, last=lim.last_date)
    return value


def promise_instalments(lim: Limits, amount_text: str, date_text: str) -> tuple[Instalment, ...]:
    due = check_date(parse_date(date_text, "date"), lim, "date")
    amount = parse_amount(amount_text, lim.currency)
    if not lim.min_amount <= amount <= lim.balance:
        raise TermsError("amount", "amount_range", low=lim.min_amount, high=lim.balance)
    return (Instalment(due, amount),)


def plan_instalments(lim: Limits, count_text: str, date_text: str) -> tuple[Instalment, ...]:
    try:
        count = int(count_text)
    except ValueError as exc:
        raise TermsError("count", "plan_invalid") from exc
    if count not in lim.plan_counts:
        raise TermsError("count", "plan_invalid")
    first = check_date(parse_date(date_text, "first_date"), lim, "first_date")
    amounts = split(lim.balance, lim.currency, count)
    return tuple(Instalment(first + timedelta(days=lim.interval_days * i), a) for i, a in enumerate(amounts))
