"""The ``cadencia`` command: ``serve <service>``, ``run`` (the whole local system), ``schemas``."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

SERVICES = ("orchestrator", "sms", "email", "voice", "whatsapp", "sandbox")


def load_service(name: str) -> tuple[Any, Any]:
    """Return ``(Settings class, create_app)`` of a service package."""
    settings_mod = importlib.import_module(f"services.{name}.settings")
    app_mod = importlib.import_module(f"services.{name}.app")
    return settings_mod.Settings, app_mod.create_app


def serve(name: str, host: str | None, port: int | None) -> None:
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
    app = create_app(settings)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=15,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cadencia", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_serve = sub.add_parser("serve", help="run one service under uvicorn")
    p_serve.add_argument("service", choices=SERVICES)
    p_serve.add_argument("--host")
    p_serve.add_argument("--port", type=int)
    p_run = sub.add_parser("run", help="run the whole system locally (embedded broker, sandbox, services)")
    p_run.add_argument("--no-demo", action="store_true", help="do not load the demo portfolio")
    p_run.add_argument("--base-port", type=int, default=8000,
                       help="orchestrator port; sms, email, voice, whatsapp follow it (0: free ports)")
    p_run.add_argument("--kafka-port", type=int, default=9092, help="embedded broker port (0: a free port)")
    p_run.add_argument("--sandbox-port", type=int, default=8090, help="provider sandbox port (0: a free port)")
    p_schemas = sub.add_parser("schemas", help="export JSON Schemas and the AsyncAPI document to docs/")
    p_schemas.add_argument("--out", default="docs")
    p_broker = sub.add_parser("broker", help="run the embedded Kafka-compatible broker in the foreground")
    p_broker.add_argument("--port", type=int, default=9092)
    args = parser.parse_args(argv)

    if args.command == "serve":
        serve(args.service, args.host, args.port)
    elif args.command == "run":
        from shared.supervisor import run_local

        return run_local(
            base_port=args.base_port, kafka_port=args.kafka_port, sandbox_port=args.sandbox_port, demo=not args.no_demo
        )
    elif args.command == "schemas":
        from shared.events.export import export

        for path in export(args.out):
            print(path)
    elif args.command == "broker":
        from shared.bus.broker import run_broker_foreground

        return run_broker_foreground(args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
