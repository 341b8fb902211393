"""A synthetic demo portfolio for ``make run``: debtors across MX, CO, PE, CL and the US.

Deterministic (seeded) so two runs show the same picture; numbers are valid for their country
(``phonenumbers``) and addressed to the sandbox, never to a real provider.
"""

from __future__ import annotations

import asyncio
import random
from datetime import date, timedelta
from decimal import Decimal

import phonenumbers

from shared.bus import EventProducer, ensure_topics
from shared.config import KafkaSettings
from shared.events import Topics
from shared.events.contracts import Account, ContactRequested, ContactRequestedEvent, Debtor

_MARKETS = [
    # jurisdiction, region, locale, currency, zone, first names, last names
    ("MX", "MX", "es-MX", "MXN", "America/Mexico_City", ["María", "José", "Lupita", "Juan"], ["Hernández", "García"]),
    ("CO", "CO", "es-CO", "COP", "America/Bogota", ["Andrés", "Valentina", "Camilo"], ["Rodríguez", "Gómez"]),
    ("PE", "PE", "es-PE", "PEN", "America/Lima", ["Rosa", "Luis", "Milagros"], ["Quispe", "Flores"]),
    ("CL", "CL", "es-CL", "CLP", "America/Santiago", ["Catalina", "Matías"], ["Muñoz", "Rojas"]),
    ("US", "US", "en-US", "USD", "America/Chicago", ["Emily", "Michael", "Ashley"], ["Johnson", "Smith"]),
    ("US-MA", "US", "en-US", "USD", "America/New_York", ["Sarah", "David"], ["Murphy", "Walsh"]),
]


def _phone(region: str, rng: random.Random) -> str:
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    assert example is not None
    national = str(example.national_number)
    for _ in range(200):
        candidate = national[:-4] + f"{rng.randrange(10_000):04d}"
        number = phonenumbers.parse(f"+{example.country_code}{candidate}")
        if phonenumbers.is_valid_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)


def demo_requests(count: int = 120, seed: int = 7, today: date | None = None) -> list[ContactRequestedEvent]:
    rng = random.Random(seed)
    today = today or date.today()
    events = []
    for i in range(count):
        jurisdiction, region, locale, currency, zone, firsts, lasts = _MARKETS[i % len(_MARKETS)]
        dpd = rng.choice([3, 9, 21, 45, 75, 120, 200])
        debtor_id = f"demo-{jurisdiction.lower()}-{i:04d}"
        phone = _phone(region, rng)
        balance = Decimal(rng.randrange(2_000, 900_000)) / (1 if currency in ("COP", "CLP") else 100)
        debtor = Debtor(
            id=debtor_id,
            name=f"{rng.choice(firsts)} {rng.choice(lasts)}",
            locale=locale,
            jurisdiction=jurisdiction,
            time_zone=zone,
            phone=phone,
            email=f"{debtor_id}@example.com",
            whatsapp=phone if region != "US" else None,
            authorized_channels=["sms", "email", "whatsapp"] if jurisdiction == "CO" else None,
        )
        account = Account(
            id=f"acct-{i:05d}",
            product=rng.choice(["personal_loan", "credit_card", "bnpl"]),
            balance=balance.quantize(Decimal("0.01")),
            currency=currency,
            days_past_due=dpd,
            due_date=today - timedelta(days=dpd),
            risk_score=round(rng.random(), 2),
            payment_url=f"https://pay.example.com/{debtor_id}",
        )
        key = "reminder_early" if dpd <= 30 else "reminder_late" if dpd <= 90 else "reminder_residual"
        events.append(
            ContactRequestedEvent(
                subject=debtor_id,
                source="cadencia/demo",
                data=ContactRequested(debtor=debtor, account=account, channel="auto", template=key,
                                      campaign_id="demo"),
            )
        )
    return events


async def _publish(bootstrap: str, count: int) -> int:
    kafka = KafkaSettings(bootstrap_servers=bootstrap)
    await ensure_topics(kafka)
    producer = EventProducer(kafka, client_id="cadencia-demo")
    await producer.start()
    try:
        topic = Topics(kafka.topic_prefix).contact_requests
        events = demo_requests(count)
        await producer.publish_many([(topic, e) for e in events])
        return len(events)
    finally:
        await producer.stop()


def publish_demo_portfolio(bootstrap: str, count: int = 120) -> int:
    return asyncio.run(_publish(bootstrap, count))
