"""``create_app(settings)`` for the orchestrator; the lifespan owns every connection."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from services.orchestrator.components import load_components
from services.orchestrator.context import Clock, OrchestratorContext
from services.orchestrator.settings import Settings
from shared.app import build_app
from shared.bus import EventProducer, ensure_topics
from shared.db import Database, OutboxRelay
from shared.db.migrate import prepare_schema
from shared.events import Topics, utcnow

MIGRATIONS = Path(__file__).parent / "migrations" / "versions"


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
            ctx = OrchestratorContext(
                settings=settings,
                db=db,
                producer=producer,
                relay=relay,
                topics=Topics(settings.kafka.topic_prefix),
                clock=clock,
            )
            app.state.ctx = ctx
            app.state.ready_checks.extend([db.ping, producer.ping])
            for component in components:
                await component.start(app, ctx, stack)
            yield

    components = load_components()
    app = build_app(settings, "Cadencia orchestrator", lifespan)
    for component in components:
        component.install(app)
    return app
