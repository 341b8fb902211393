"""``create_app(settings)`` for the orchestrator; the lifespan owns every connection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI

from services.orchestrator.components import load_components
from services.orchestrator.context import Clock, OrchestratorContext
from services.orchestrator.settings import Settings
from shared.app import abandon_hook, build_app
from shared.bus import EventProducer, ensure_topics
from shared.bus.admin import TopicGuard
from shared.db import Database, OutboxRelay
from shared.db.migrate import prepare_schema
from shared.db.retention import Pruner, PruneTarget, attempts_target, inbox_target
from shared.events import Topics, utcnow

MIGRATIONS = Path(__file__).parent / "migrations" / "versions"


def retention_targets(settings: Settings) -> list[PruneTarget]:
    """The inbox and attempts every service prunes, and the contact status history."""
    from services.orchestrator.runtime.models import StatusHistoryRow

    history = PruneTarget(StatusHistoryRow.__table__, StatusHistoryRow.at,  # type: ignore[arg-type]
                          timedelta(days=settings.retention.status_history_days))
    return [inbox_target(settings.retention), attempts_target(settings.retention), history]


def create_app(settings: Settings, clock: Clock = utcnow) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            db = Database(settings.database)
            stack.push_async_callback(db.dispose)
            await prepare_schema(db, settings.service_name, MIGRATIONS, migrate=bool(settings.migrate_on_start))
            if settings.create_topics:
                await ensure_topics(settings.kafka)
            producer = EventProducer(settings.kafka, client_id="orchestrator")
            await producer.start()
            stack.push_async_callback(producer.stop)
            relay = OutboxRelay(db, producer, metrics=app.state.metrics)
            await relay.start()
            stack.push_async_callback(relay.stop)
            # Real time, as the inbox's own timestamps are (the runtime's clock only dates the history).
            pruner = Pruner(db, retention_targets(settings), settings.retention, registry=app.state.metrics)
            await pruner.start()
            stack.push_async_callback(pruner.stop)
            app.state.pruner = pruner
            ctx = OrchestratorContext(
                settings=settings,
                db=db,
                producer=producer,
                relay=relay,
                topics=Topics(settings.kafka.topic_prefix),
                clock=clock,
            )
            app.state.ctx = ctx
            guard = TopicGuard(producer, settings.kafka, abandon_hook(app) if settings.create_topics else None)
            await guard.start()
            stack.push_async_callback(guard.stop)
            app.state.ready_checks.extend([db.ping, producer.ping, guard.ping])
            for component in components:
                await component.start(app, ctx, stack)
            yield

    components = load_components()
    app = build_app(settings, "Cadencia orchestrator", lifespan)
    for component in components:
        component.install(app)
    return app
