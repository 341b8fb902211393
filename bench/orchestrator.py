"""Orchestrator decisions per second, in-process: contact requests through the runtime's consumer
handler straight into the database (no broker, no HTTP), on a portfolio of pre-seeded debtors.

Each debtor is seeded with an account, a few dispatches and a reply in the last days (its ledger), so
every decision reads a real ledger; requests go to debtors drawn at random from the whole portfolio,
in consumer batches of ``--batch`` records, as the Kafka consumer would hand them over. The runtime is
the real one (policy packs, strategy, template store, ops hooks). Seeding is set-based SQL (a
recursive CTE on SQLite, ``generate_series`` on PostgreSQL), so a million debtors is feasible.

    .venv/bin/python bench/orchestrator.py --debtors 10000 --requests 2000
    .venv/bin/python bench/orchestrator.py --postgres postgresql+asyncpg://user@127.0.0.1/db --debtors 1000000
    .venv/bin/python bench/orchestrator.py --per-record      # the record-by-record handler, for comparison

Prints the decision mix (dispatched / deferred / rejected) and decisions/s for the chosen size.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.orchestrator.app import MIGRATIONS  # noqa: E402
from services.orchestrator.context import OrchestratorContext  # noqa: E402
from services.orchestrator.ops.hooks import OpsHooks  # noqa: E402
from services.orchestrator.runtime import handlers, policy_port  # noqa: E402
from services.orchestrator.runtime.models import ContactRequestRow  # noqa: E402
from services.orchestrator.runtime.operations import Runtime  # noqa: E402
from services.orchestrator.runtime.strategy import Strategy  # noqa: E402
from services.orchestrator.settings import Settings  # noqa: E402
from services.orchestrator.templates import template_store as templates  # noqa: E402
from shared.bus import EventProducer, RecordMeta  # noqa: E402
from shared.config import DatabaseSettings, KafkaSettings  # noqa: E402
from shared.db import Database, OutboxRelay  # noqa: E402
from shared.db.migrate import prepare_schema  # noqa: E402
from shared.events import Topics  # noqa: E402
from shared.events.contracts import Account, ContactRequested, ContactRequestedEvent, Debtor, TemplateContent  # noqa: E402
from shared.logging import configure_logging  # noqa: E402

#: Wednesday 15:00 UTC: 10:00 in New York, lawful for the seeded US debtors.
NOW = datetime(2025, 3, 12, 15, 0, tzinfo=UTC)
LINE = ("{{ creditor.name }}: tienes un saldo pendiente. A message from a debt collector. "
        "Reply STOP to opt out / Responde STOP para no recibir.")
CONTENT = {
    "sms": TemplateContent(body=LINE),
    "whatsapp": TemplateContent(body=LINE),
    "email": TemplateContent(subject="{{ creditor.name }}: tu saldo pendiente", text=LINE, html=f"<p>{LINE}</p>"),
    "voice": TemplateContent(
        voice_script="Hola, le llamamos de parte de {{ creditor.name }} sobre su cuenta (a debt collector).",
        voicemail_script="Por favor devuelva la llamada a {{ creditor.name }}.",
    ),
}

# One row per debtor (and its account); n is 1..N. Dispatches: two per debtor in the last 2 and 5 days;
# a reply per tenth debtor. Timestamps are naive UTC text on SQLite, timestamptz on PostgreSQL.
SEED = {
    "sqlite": [
        """WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < :count)
           INSERT INTO debtors (id, name, locale, jurisdiction, time_zone, phone, email)
           SELECT 'bench-' || n, 'Ana Pérez', 'es-MX', 'US', 'America/New_York',
                  '+12122' || printf('%06d', n % 1000000), 'debtor' || n || '@example.com' FROM s""",
        """WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < :count)
           INSERT INTO accounts (id, debtor_id, product, balance, currency, days_past_due, status)
           SELECT 'acct-' || n, 'bench-' || n, 'card', 1234.5, 'USD', 45, 'active' FROM s""",
        """WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < :count), d(k) AS (VALUES (2), (5))
           INSERT INTO dispatches (id, request_id, debtor_id, account_id, channel, address, kind, attempt,
                                   template_key, template_version, consented, status, at, updated_at)
           SELECT 'seed-' || n || '-' || k, 'seed-' || n || '-' || k, 'bench-' || n, 'acct-' || n,
                  CASE k WHEN 2 THEN 'sms' ELSE 'email' END, 'debtor' || n || '@example.com', 'collection', 1,
                  'reminder', 1, 0, 'delivered', datetime(:now, '-' || k || ' days'),
                  datetime(:now, '-' || k || ' days')
           FROM s, d""",
        """WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < :count)
           INSERT INTO responses (event_id, debtor_id, channel, kind, text, occurred_at, at)
           SELECT 'seed-reply-' || n, 'bench-' || n, 'sms', 'reply', 'ok', datetime(:now, '-3 days'),
                  datetime(:now, '-3 days') FROM s WHERE n % 10 = 0""",
    ],
    "postgresql": [
        """INSERT INTO debtors (id, name, locale, jurisdiction, time_zone, phone, email)
           SELECT 'bench-' || n, 'Ana Pérez', 'es-MX', 'US', 'America/New_York',
                  '+12122' || lpad((n % 1000000)::text, 6, '0'), 'debtor' || n || '@example.com'
           FROM generate_series(1, :count) AS n""",
        """INSERT INTO accounts (id, debtor_id, product, balance, currency, days_past_due, status)
           SELECT 'acct-' || n, 'bench-' || n, 'card', 1234.5, 'USD', 45, 'active'
           FROM generate_series(1, :count) AS n""",
        """INSERT INTO dispatches (id, request_id, debtor_id, account_id, channel, address, kind, attempt,
                                   template_key, template_version, consented, status, at, updated_at)
           SELECT 'seed-' || n || '-' || k, 'seed-' || n || '-' || k, 'bench-' || n, 'acct-' || n,
                  CASE k WHEN 2 THEN 'sms' ELSE 'email' END, 'debtor' || n || '@example.com', 'collection', 1,
                  'reminder', 1, false, 'delivered', CAST(:now AS timestamptz) - k * interval '1 day',
                  CAST(:now AS timestamptz) - k * interval '1 day'
           FROM generate_series(1, :count) AS n, (VALUES (2), (5)) AS d(k)""",
        """INSERT INTO responses (event_id, debtor_id, channel, kind, text, occurred_at, at)
           SELECT 'seed-reply-' || n, 'bench-' || n, 'sms', 'reply', 'ok',
                  CAST(:now AS timestamptz) - interval '3 days', CAST(:now AS timestamptz) - interval '3 days'
           FROM generate_series(1, :count) AS n WHERE n % 10 = 0""",
    ],
}


async def seed(db: Database, count: int) -> float:
    started = time.perf_counter()
    dialect = "postgresql" if db.is_postgres else "sqlite"
    now: object = NOW if db.is_postgres else NOW.replace(tzinfo=None).isoformat(sep=" ")
    async with db.transaction() as session:
        if await session.scalar(select(func.count()).select_from(text("debtors"))):
            return 0.0  # an existing bench database: keep its portfolio
        for statement in SEED[dialect]:
            await session.execute(text(statement), {"count": count, "now": now})
        for channel, content in CONTENT.items():
            draft = templates.Draft(channel=channel, locale="es-MX", variant="A",  # type: ignore[arg-type]
                                    content=content, variables_schema={})
            row = await templates.create_version(session, "reminder", draft, NOW)
            await templates.publish(session, "bench.templates", row, NOW)
    if db.is_postgres:
        async with db.engine.connect() as conn:
            await conn.execute(text("COMMIT"))
            await conn.execute(text("ANALYZE"))
    return time.perf_counter() - started


def requests(count: int, debtors: int, rng: random.Random) -> list[ContactRequestedEvent]:
    events = []
    for _ in range(count):
        n = rng.randrange(1, debtors + 1)
        debtor = Debtor(id=f"bench-{n}", name="Ana Pérez", locale="es-MX", jurisdiction="US",
                        time_zone="America/New_York", phone=f"+12122{n % 1_000_000:06d}",
                        email=f"debtor{n}@example.com")
        account = Account(id=f"acct-{n}", product="card", balance="1234.50", currency="USD", days_past_due=45,
                          payment_url="https://pay.example.com/x")
        data = ContactRequested(debtor=debtor, account=account, channel="auto", template="reminder")
        events.append(ContactRequestedEvent(source="bench", subject=debtor.id, data=data))
    return events


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debtors", type=int, default=10_000, help="pre-seeded debtors (each with a ledger)")
    parser.add_argument("--requests", type=int, default=2_000, help="contact requests to decide")
    parser.add_argument("--batch", type=int, default=500, help="records per consumer batch")
    parser.add_argument("--postgres", metavar="DSN", help="a PostgreSQL database (postgresql+asyncpg://...)")
    parser.add_argument("--per-record", action="store_true", help="the record-by-record handler instead")
    parser.add_argument("--rng-seed", type=int, default=7,
                        help="which debtors are drawn (another seed on a kept database: debtors not yet contacted)")
    args = parser.parse_args()
    configure_logging("WARNING")
    url = args.postgres or f"sqlite+aiosqlite:///{tempfile.mkdtemp(prefix='bench-orch-')}/orchestrator.db"
    kafka = KafkaSettings(topic_prefix="bench.")
    settings = Settings(kafka=kafka, database=DatabaseSettings(url=url, pool_size=4))
    db = Database(settings.database)
    producer = EventProducer(kafka)  # never started: the outbox is only written, not relayed
    try:
        await prepare_schema(db, settings.service_name, MIGRATIONS, migrate=True)
        seconds = await seed(db, args.debtors)
        print(f"seeded {args.debtors} debtors in {seconds:.1f}s ({'PostgreSQL' if db.is_postgres else 'SQLite'})",
              flush=True)
        ctx = OrchestratorContext(settings=settings, db=db, producer=producer, relay=OutboxRelay(db, producer),
                                  topics=Topics(kafka.topic_prefix), clock=lambda: NOW)
        policy = policy_port.load(settings.policy_dirs, settings.send_margin_s)
        rt = Runtime(ctx=ctx, strategy=Strategy.load(), policy=policy, jurisdictions=policy_port.jurisdictions(policy))
        rt.hooks = OpsHooks(rt)
        batch_handler = getattr(handlers, "BatchHandler", None)
        per_record = args.per_record or batch_handler is None
        topic = ctx.topics.contact_requests
        rng = random.Random(args.rng_seed)
        events = requests(args.requests + 50, args.debtors, rng)
        warm, events = events[:50], events[50:]

        async def run(chunk: list[ContactRequestedEvent], offset: int) -> None:
            items = [(e, RecordMeta(topic, 0, offset + i, e.subject.encode())) for i, e in enumerate(chunk)]
            if per_record:
                handle = handlers.EventHandlers(rt)
                for event, meta in items:
                    await handle(event, meta)
            else:
                await batch_handler(rt)(items)  # type: ignore[misc]

        await run(warm, 0)  # imports, caches, first connections
        started = time.perf_counter()
        for i in range(0, len(events), args.batch):
            await run(events[i:i + args.batch], 50 + i)
        elapsed = time.perf_counter() - started
        async with db.sessions() as session:
            mix = Counter(dict((await session.execute(
                select(ContactRequestRow.status, func.count()).where(ContactRequestRow.id.in_([e.id for e in events]))
                .group_by(ContactRequestRow.status)
            )).all()))
        mode = "record by record" if per_record else f"batches of {args.batch}"
        print(f"{len(events)} requests, {mode}: {dict(mix)}")
        print(f"{len(events) / elapsed:.0f} decisions/s ({args.debtors} debtors)")
    finally:
        await producer.stop()
        await db.dispose()


if __name__ == "__main__":
    asyncio.run(main())
