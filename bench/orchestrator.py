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
    # whether decisions/s stay flat as the ledger grows (DESIGN §12), in one run: a fresh database per
    # size (SQLite files, or throwaway PostgreSQL databases dropped at the end), each rate as a ratio
    # to the first size's
    .venv/bin/python bench/orchestrator.py --sizes 10000,1000000 --postgres-admin postgresql://postgres@127.0.0.1:5432/postgres

Prints the decision mix (dispatched / deferred / rejected) and decisions/s for each size. Each request
goes to a different debtor (while the portfolio has enough), so every size decides the same mix; before,
draws with repeats met debtors already contacted in the run far more often on a small portfolio, and the
caps deferred them, a cheaper decision than a dispatch.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import func, select, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pipeline_kit import Databases  # noqa: E402

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
    """``count`` requests for distinct debtors drawn at random (with repeats only when the portfolio is
    smaller than ``count``): every size then decides the same mix, so its rate reflects the ledger's
    size, not how many draws met a debtor already contacted in the run."""
    events = []
    if debtors >= count:
        drawn = rng.sample(range(1, debtors + 1), count)
    else:
        print(f"{debtors:,} debtors for {count:,} requests (warm-up included): some debtors get two, and the caps "
              "defer the second: not comparable with a larger portfolio's mix", flush=True)
        drawn = [rng.randrange(1, debtors + 1) for _ in range(count)]
    for n in drawn:
        debtor = Debtor(id=f"bench-{n}", name="Ana Pérez", locale="es-MX", jurisdiction="US",
                        time_zone="America/New_York", phone=f"+12122{n % 1_000_000:06d}",
                        email=f"debtor{n}@example.com")
        account = Account(id=f"acct-{n}", product="card", balance="1234.50", currency="USD", days_past_due=45,
                          payment_url="https://pay.example.com/x")
        data = ContactRequested(debtor=debtor, account=account, channel="auto", template="reminder")
        events.append(ContactRequestedEvent(source="bench", subject=debtor.id, data=data))
    return events


@dataclass
class Measured:
    debtors: int
    seed_s: float
    requests: int
    rate: float
    mix: dict[str, int]


async def measure(url: str, args: argparse.Namespace, debtors: int) -> Measured:
    """Seed ``debtors`` (unless the database already holds a portfolio), warm up, then decide
    ``args.requests`` contact requests in consumer batches and time them."""
    kafka = KafkaSettings(topic_prefix="bench.")
    settings = Settings(kafka=kafka, database=DatabaseSettings(url=url, pool_size=4))
    db = Database(settings.database)
    producer = EventProducer(kafka)  # never started: the outbox is only written, not relayed
    try:
        await prepare_schema(db, settings.service_name, MIGRATIONS, migrate=True)
        seconds = await seed(db, debtors)
        print(f"seeded {debtors:,} debtors in {seconds:.1f}s ({'PostgreSQL' if db.is_postgres else 'SQLite'})",
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
        events = requests(args.requests + 50, debtors, rng)
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
        print(f"{len(events) / elapsed:.0f} decisions/s ({debtors:,} debtors)", flush=True)
        return Measured(debtors, seconds, len(events), len(events) / elapsed, dict(sorted(mix.items())))
    finally:
        await producer.stop()
        await db.dispose()


def sizes(text: str) -> list[int]:
    try:
        found = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of debtor counts: {text!r}") from None
    if not found or min(found) < 1:
        raise argparse.ArgumentTypeError(f"debtor counts must be positive: {text!r}")
    return found


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debtors", type=int, default=10_000, help="pre-seeded debtors (each with a ledger)")
    parser.add_argument("--sizes", type=sizes, metavar="N,N,...",
                        help="several portfolio sizes in one run, each on a fresh database (overrides --debtors)")
    parser.add_argument("--requests", type=int, default=2_000, help="contact requests to decide")
    parser.add_argument("--batch", type=int, default=500, help="records per consumer batch")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--postgres", metavar="DSN",
                       help="a PostgreSQL database (postgresql+asyncpg://...), kept: its portfolio is reused")
    where.add_argument("--postgres-admin", metavar="ADMIN_DSN",
                       help="PostgreSQL admin DSN: a throwaway database per size, dropped at the end")
    parser.add_argument("--per-record", action="store_true", help="the record-by-record handler instead")
    parser.add_argument("--rng-seed", type=int, default=7,
                        help="which debtors are drawn (another seed on a kept database: debtors not yet contacted)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.postgres and args.sizes and len(args.sizes) > 1:
        parser.error("--sizes needs a fresh database per size: --postgres-admin, or SQLite (the default)")
    configure_logging("WARNING")
    dbs = Databases(Path(tempfile.mkdtemp(prefix="bench-orch-")), args.postgres_admin)
    results: list[Measured] = []
    try:
        for count in args.sizes or [args.debtors]:
            url = args.postgres or await dbs.fresh(f"orchestrator_{count}")
            results.append(await measure(url, args, count))
    finally:
        await dbs.drop_all()
    if len(results) > 1:
        base = results[0]
        print(f"\ndecisions/s by portfolio size, one run ({'PostgreSQL' if args.postgres_admin else 'SQLite'}, "
              f"{args.requests:,} requests in batches of {args.batch}):")
        print(f"{'debtors':>12} {'seeded in':>10} {'decisions/s':>12} {'÷ first':>8}  mix")
        for r in results:
            print(f"{r.debtors:>12,} {r.seed_s:>9.1f}s {r.rate:>12,.0f} {r.rate / base.rate:>8.2f}  {r.mix}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({
            "database": "postgresql" if (args.postgres or args.postgres_admin) else "sqlite",
            "batch": args.batch, "per_record": args.per_record,
            "sizes": [{**vars(r), "ratio_to_first": r.rate / results[0].rate} for r in results],
        }, indent=2) + "\n")


if __name__ == "__main__":
    asyncio.run(main())
