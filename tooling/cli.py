"""The ``cadencia`` command: ``serve <service>``, ``migrate``, ``run`` (the whole local system), ``import``,
``schemas``."""

from __future__ import annotations

import argparse
import gc
import importlib
import sys
from typing import Any

SERVICES = ("orchestrator", "sms", "email", "voice", "whatsapp", "sandbox")
#: Services with a database of their own (the sandbox keeps its state in memory).
DATABASE_SERVICES = ("orchestrator", "sms", "email", "voice", "whatsapp")


def load_service(name: str) -> tuple[Any, Any]:
    """Return ``(Settings class, create_app)`` of a service package."""
    settings_mod = importlib.import_module(f"services.{name}.settings")
    app_mod = importlib.import_module(f"services.{name}.app")
    return settings_mod.Settings, app_mod.create_app


#: Exit status of a service whose consumer (or other vital background task) crashed.
EXIT_FATAL = 70

#: Container objects alive beyond the last collection that start the next young one (CPython's default is 700).
GC_YOUNG_THRESHOLD = 100_000


def tune_gc() -> None:
    """Set the served process's garbage collector for a long-lived service that allocates per event.

    What exists once the app is built (modules, the app, its settings) is frozen out of collections,
    and the youngest generation is collected once ``GC_YOUNG_THRESHOLD`` more container objects are
    alive than at the last collection, instead of 700: with the default settings the orchestrator
    spent a tenth of its CPU in the collector, most of it in full collections of the whole heap, and
    at 10,000 still about 5% in young collections of 10–20 ms each, because a consumer batch keeps
    tens of thousands of objects alive while it runs (docs/benchmarks.md, eighteenth round). Only how
    often it runs changes: cyclic garbage (a few thousand objects over a 20,000-request burst) is
    still collected, later; a collection then takes 50–150 ms, once or twice a burst."""
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def serve(
    name: str, host: str | None, port: int | None, workers: int = 1,
    listen_fd: int | None = None, worker: int | None = None,
) -> int:
    """Serve one service under uvicorn; with ``workers`` > 1, as that many processes behind one port
    (``tooling.workers``). ``listen_fd`` and ``worker`` are how such a parent starts each worker: an
    inherited listening socket to serve, and the worker's index (on every log line)."""
    import uvicorn

    from shared.logging import configure_logging

    settings_cls, create_app = load_service(name)
    overrides: dict[str, Any] = {}
    if host:
        overrides["host"] = host
    if port:
        overrides["port"] = port
    settings = settings_cls(**overrides)
    configure_logging(settings.log_level, settings.log_format)
    if workers > 1:
        from tooling.workers import serve_workers

        database_url = settings.database.url if name in DATABASE_SERVICES else None
        return serve_workers(
            name, settings, workers, database_url=database_url,
            migrate=(lambda: migrate([name], check=False, wait=0)) if database_url else None,
        )
    if worker is not None:
        import structlog

        structlog.contextvars.bind_contextvars(worker=worker)
    app = create_app(settings)
    tune_gc()
    server = uvicorn.Server(uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=15,
    ))
    fatal: list[BaseException] = []

    def exit_on_fatal(reason: BaseException) -> None:
        # Shut down cleanly (the lifespan commits what is done), then exit non-zero for a restart.
        fatal.append(reason)
        server.should_exit = True

    app.state.exit_on_fatal = exit_on_fatal
    if listen_fd is not None:
        import socket

        server.run(sockets=[socket.socket(fileno=listen_fd)])
    else:
        server.run()
    return EXIT_FATAL if fatal else 0


def migration_settings(name: str) -> Any:
    """A service's settings for migrating its database: only the database matters.

    The production guard is about providers, keys and public URLs, none of which a migration uses,
    so a migration Job needs only ``<SERVICE>_DATABASE_URL`` — but in production that URL must be
    given: the local SQLite default would migrate a file inside the Job's container."""
    import os

    settings_cls, _ = load_service(name)
    settings = settings_cls(env="development")
    if os.environ.get("CADENCIA_ENV") == "production" and settings.database.url.startswith("sqlite"):
        raise ValueError(f"set {name.upper()}_DATABASE_URL (or DATABASE_URL) to migrate {name} in production")
    return settings


def migrate(names: list[str], check: bool, wait: float) -> int:
    """Migrate (or with ``check`` only verify) each service's database from its usual settings.

    ``wait`` > 0 keeps checking until every schema is current or the time is up: an init container
    waits for the migration Job this way instead of crash-looping the service."""
    import asyncio
    import time

    from shared.db import Database
    from shared.db.migrate import missing_revisions, upgrade
    from shared.logging import configure_logging, get_logger

    async def one(name: str) -> set[str]:
        settings = migration_settings(name)
        configure_logging(settings.log_level, settings.log_format)
        versions = importlib.import_module(f"services.{name}.app").MIGRATIONS
        db = Database(settings.database)
        try:
            if not check:
                await upgrade(db, name, versions)
            return await missing_revisions(db, name, versions)
        finally:
            await db.dispose()

    async def all_current() -> bool:
        log = get_logger("cadencia.migrate")
        current = True
        for name in names:
            try:
                missing = await one(name)
            except Exception as exc:  # database not reachable yet: report, maybe wait
                log.warning("schema check failed", service=name, error=f"{type(exc).__name__}: {exc}")
                current = False
                continue
            if missing:
                log.warning("schema behind the code", service=name, missing=sorted(missing))
                current = False
            else:
                log.info("schema current", service=name, migrated=not check)
        return current

    deadline = time.monotonic() + wait
    while True:
        if asyncio.run(all_current()):
            return 0
        if time.monotonic() >= deadline:
            return 1
        time.sleep(2)  # a CLI poll between whole checks, not a test or a lifespan


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cadencia", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="run one service under uvicorn")
    p_serve.add_argument("service", choices=SERVICES)
    p_serve.add_argument("--host")
    p_serve.add_argument("--port", type=int)
    p_serve.add_argument("--workers", type=_positive, default=1,
                         help="processes of this service in one consumer group behind one port (PostgreSQL only)")
    p_serve.add_argument("--listen-fd", type=int, help=argparse.SUPPRESS)  # set by the --workers parent
    p_serve.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    p_migrate = sub.add_parser("migrate", help="bring each service's database to its code's schema (run once)")
    p_migrate.add_argument("services", nargs="*", metavar="service",
                           help=f"one of {', '.join(DATABASE_SERVICES)}; default: all of them")
    p_migrate.add_argument("--check", action="store_true", help="only check; exit 1 if a schema is behind")
    p_migrate.add_argument("--wait", type=float, default=0.0, help="keep checking up to this many seconds")
    p_run = sub.add_parser("run", help="run the whole system locally (embedded broker, sandbox, services)")
    p_run.add_argument("--no-demo", action="store_true", help="do not load the demo portfolio")
    p_run.add_argument("--base-port", type=int, default=8000,
                       help="orchestrator port; sms, email, voice, whatsapp follow it (0: free ports)")
    p_run.add_argument("--kafka-port", type=int, default=9092, help="embedded broker port (0: a free port)")
    p_run.add_argument("--sandbox-port", type=int, default=8090, help="provider sandbox port (0: a free port)")
    p_schemas = sub.add_parser("schemas", help="export JSON Schemas and the AsyncAPI document to docs/")
    p_schemas.add_argument("--out", default="docs")
    p_import = sub.add_parser("import", help="import a portfolio (.csv or .jsonl) through the orchestrator's API")
    p_import.add_argument("file")
    p_import.add_argument("--url", help="orchestrator URL (CADENCIA_ORCHESTRATOR_URL, default http://127.0.0.1:8000)")
    p_import.add_argument("--key", help="editor API key (CADENCIA_API_KEY, default the development key)")
    p_broker = sub.add_parser("broker", help="run the embedded Kafka-compatible broker in the foreground")
    p_broker.add_argument("--port", type=int, default=9092)
    args = parser.parse_args(argv)

    if args.command == "serve":
        return serve(args.service, args.host, args.port, args.workers, args.listen_fd, args.worker)
    elif args.command == "migrate":
        unknown = set(args.services) - set(DATABASE_SERVICES)
        if unknown:
            parser.error(f"no database to migrate for: {', '.join(sorted(unknown))}")
        return migrate(list(args.services) or list(DATABASE_SERVICES), args.check, args.wait)
    elif args.command == "run":
        from tooling.supervisor import run_local

        return run_local(
            base_port=args.base_port, kafka_port=args.kafka_port, sandbox_port=args.sandbox_port, demo=not args.no_demo
        )
    elif args.command == "schemas":
        from shared.events.export import export

        for path in export(args.out):
            print(path)
    elif args.command == "import":
        from services.orchestrator.imports.client import default_key, default_url, run_import

        return run_import(args.file, args.url or default_url(), args.key or default_key())
    elif args.command == "broker":
        from shared.bus.broker import run_broker_foreground

        return run_broker_foreground(args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
