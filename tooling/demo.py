"""A synthetic demo portfolio for ``make run``: debtors across MX, CO, PE, CL and the US.

Deterministic (seeded) so two runs show the same picture; numbers are valid for their country
(``phonenumbers``) and addressed to the sandbox, never to a real provider.

The whole loop shows within a minute: each debtor's address picks one of the sandbox's documented
outcomes (``docs/sandbox.md``: numbers ending ``7001`` answer STOP, ``7003`` answer "1", ``3003`` are
undelivered, ``bounce+…`` mail bounces, ``unsubscribe+…`` unsubscribes, calls to ``…2011`` press 1),
a few requests are scheduled for tomorrow (deferred) or ask for a channel the debtor has not
authorised (rejected), and :func:`demo_follow_ups` reports payments and promises a little later,
as a backend would.
"""

from __future__ import annotations

import asyncio
import random
import threading
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import phonenumbers

from shared.bus import EventProducer, ensure_topics
from shared.config import KafkaSettings
from shared.events import Topics
from shared.events.contracts import (
    Account,
    ContactRequested,
    ContactRequestedEvent,
    Debtor,
    PaymentReceived,
    PaymentReceivedEvent,
    PromiseMade,
    PromiseMadeEvent,
)

AccountEvent = PaymentReceivedEvent | PromiseMadeEvent

_MARKETS = [
    # jurisdiction, region, locale, currency, zone, first names, last names
    ("MX", "MX", "es-MX", "MXN", "America/Mexico_City", ["María", "José", "Lupita", "Juan"], ["Hernández", "García"]),
    ("CO", "CO", "es-CO", "COP", "America/Bogota", ["Andrés", "Valentina", "Camilo"], ["Rodríguez", "Gómez"]),
    ("PE", "PE", "es-PE", "PEN", "America/Lima", ["Rosa", "Luis", "Milagros"], ["Quispe", "Flores"]),
    ("CL", "CL", "es-CL", "CLP", "America/Santiago", ["Catalina", "Matías"], ["Muñoz", "Rojas"]),
    ("US", "US", "en-US", "USD", "America/Chicago", ["Emily", "Michael", "Ashley"], ["Johnson", "Smith"]),
    ("US-MA", "US", "en-US", "USD", "America/New_York", ["Sarah", "David"], ["Murphy", "Walsh"]),
]


#: (scenario, the sandbox's rule for it, the channel to try first); one per debtor, in turn.
SCENARIOS: list[tuple[str, str, str]] = [
    ("opt_out", "7001", "sms"),          # replies STOP
    ("promise", "7003", "sms"),          # replies "1": a promise to pay (then pays, see demo_follow_ups)
    ("reply", "7004", "sms"),            # replies with free text
    ("undelivered", "3003", "sms"),      # carrier refuses: falls back to the next channel
    ("bounce", "bounce", "email"),       # mail bounces: the address is suppressed
    ("unsubscribe", "unsubscribe", "email"),
    ("read", "4000", "sms"),
    ("keypress", "2011", "voice"),       # answers and presses 1
    ("delivered", "", "email"),
    ("delivered", "", "sms"),
]
CAMPAIGNS = ("nov-reminders", "late-recovery", "hardship-outreach")


def _phone(region: str, rng: random.Random, suffix: str = "") -> str:
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    assert example is not None
    national = str(example.national_number)
    for _ in range(200):
        if suffix.isdigit():  # the sandbox's rule keys on the last four digits; vary the four before
            candidate = national[:-8] + f"{rng.randrange(10_000):04d}" + suffix
        else:
            candidate = national[:-4] + f"{rng.randrange(10_000):04d}"
        number = phonenumbers.parse(f"+{example.country_code}{candidate}")
        if phonenumbers.is_valid_number(number):
            return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    return phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)


def demo_requests(count: int = 120, seed: int = 7, now: datetime | None = None) -> list[ContactRequestedEvent]:
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    today = now.date()
    events = []
    for i in range(count):
        jurisdiction, region, locale, currency, zone, firsts, lasts = _MARKETS[i % len(_MARKETS)]
        dpd = rng.choice([3, 9, 21, 45, 75, 120, 200])
        debtor_id = f"demo-{jurisdiction.lower()}-{i:04d}"
        scenario, rule, first = SCENARIOS[i % len(SCENARIOS)]
        if jurisdiction == "CO" and first == "voice":
            first = "sms"  # the CO demo debtors authorise sms, email and whatsapp only
        phone = _phone(region, rng, rule)
        mailbox = f"{rule}+{debtor_id}" if rule.isalpha() else debtor_id
        balance = Decimal(rng.randrange(2_000, 900_000)) / (1 if currency in ("COP", "CLP") else 100)
        debtor = Debtor(
            id=debtor_id,
            name=f"{rng.choice(firsts)} {rng.choice(lasts)}",
            locale=locale,
            jurisdiction=jurisdiction,
            time_zone=zone,
            phone=phone,
            email=f"{mailbox}@example.com",
            whatsapp=phone if region != "US" else None,
            authorized_channels=["sms", "email", "whatsapp"] if jurisdiction == "CO" else None,
            preferred_channel=first,
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
        request = ContactRequested(debtor=debtor, account=account, channel="auto", template=key,
                                   campaign_id=CAMPAIGNS[i % len(CAMPAIGNS)])
        events.append(ContactRequestedEvent(subject=debtor_id, source="cadencia/demo", data=request))
        if i % 20 == 18:  # a reminder scheduled for tomorrow: deferred until then
            later = request.model_copy(update={"not_before": now + timedelta(days=1),
                                               "template": "reminder_early"})
            events.append(ContactRequestedEvent(subject=debtor_id, source="cadencia/demo", data=later))
        if jurisdiction == "CO" and i % 4 == 1:  # a call the debtor never authorised: rejected
            call = request.model_copy(update={"channel": "voice"})
            events.append(ContactRequestedEvent(subject=debtor_id, source="cadencia/demo", data=call))
    return events


def demo_follow_ups(requests: list[ContactRequestedEvent], today: date | None = None) -> list[AccountEvent]:
    """What the backends report a little later: payments from those who promised, and promises."""
    first_requests: dict[str, ContactRequestedEvent] = {}
    for event in requests:  # debtor i's first request; the extra ones follow it
        first_requests.setdefault(event.data.debtor.id, event)
    follow_ups: list[AccountEvent] = []
    for i, event in enumerate(first_requests.values()):
        debtor_id, account_id = event.data.debtor.id, event.data.account.id
        scenario = SCENARIOS[i % len(SCENARIOS)][0]
        if scenario in ("promise", "keypress"):
            follow_ups.append(PaymentReceivedEvent(subject=debtor_id, source="cadencia/demo", data=PaymentReceived(
                debtor_id=debtor_id, account_id=account_id, amount=event.data.account.balance,
                currency=event.data.account.currency)))
        elif scenario == "read":
            follow_ups.append(PromiseMadeEvent(subject=debtor_id, source="cadencia/demo", data=PromiseMade(
                debtor_id=debtor_id, account_id=account_id, due_date=(today or date.today()) + timedelta(days=5))))
    return follow_ups


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


async def _publish_follow_ups(bootstrap: str, count: int) -> None:
    kafka = KafkaSettings(bootstrap_servers=bootstrap)
    producer = EventProducer(kafka, client_id="cadencia-demo-follow-ups")
    await producer.start()
    try:
        topic = Topics(kafka.topic_prefix).account_events
        await producer.publish_many([(topic, e) for e in demo_follow_ups(demo_requests(count))])
    finally:
        await producer.stop()


def publish_demo_portfolio(bootstrap: str, count: int = 120, follow_up_after: float = 20.0) -> int:
    """Publish the portfolio now and, ``follow_up_after`` seconds later (in the background), the
    payments and promises the backends report once the first contacts went out."""
    published = asyncio.run(_publish(bootstrap, count))
    if follow_up_after >= 0:
        timer = threading.Timer(follow_up_after, lambda: asyncio.run(_publish_follow_ups(bootstrap, count)))
        timer.daemon = True
        timer.start()
    return published
