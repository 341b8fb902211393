"""``create_app(settings)`` for the voice service; the lifespan owns every connection.

In start order: the database (migrated), the producer, the outbox relay, the template cache, the Twilio
Calls client and the dispatch consumer (the shared :class:`~shared.channels.dispatch.DispatchHandler`
with the Calls adapter: same send log, at-most-once and retry rules as SMS); they stop in reverse.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from services.voice.calls import TwilioCallAdapter, call_status_url
from services.voice.settings import Settings
from services.voice.webhooks import VoiceContext, voice_webhooks
from shared.app import build_app
from shared.bus import ConsumerRunner, EventProducer, ensure_topics
from shared.channels.dispatch import DispatchHandler
from shared.channels.ratelimit import SenderLimits
from shared.db import Database, OutboxRelay
from shared.db.migrate import upgrade
from shared.events import Topics
from shared.providers.twilio import TwilioCalls, TwilioSignature
from shared.templates.cache import TemplateCache

MIGRATIONS = Path(__file__).parent / "migrations" / "versions"


def create_app(settings: Settings) -> FastAPI:
    service = settings.service_name

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            db = Database(settings.database)
            stack.push_async_callback(db.dispose)
            await upgrade(db, service, MIGRATIONS)
            if settings.create_topics:
                await ensure_topics(settings.kafka)
            topics = Topics(settings.kafka.topic_prefix)
            producer = EventProducer(settings.kafka, client_id=service)
            await producer.start()
            stack.push_async_callback(producer.stop)
            relay = OutboxRelay(db, producer)
            await relay.start()
            stack.push_async_callback(relay.stop)
            templates = TemplateCache(
                settings.kafka, settings.orchestrator_url, settings.orchestrator_api_key.get_secret_value()
            )
            # Overlap the cache's consumer-group join with the dispatch consumer's (see create_message_app).
            templates_started = asyncio.create_task(templates.start(), name="template-cache-start")
            stack.push_async_callback(templates.stop)
            client = TwilioCalls(
                settings.twilio,
                timeout=settings.sending.request_timeout_s,
                connect_timeout=settings.sending.connect_timeout_s,
                max_connections=settings.sending.max_in_flight,
            )
            stack.push_async_callback(client.aclose)
            handler = DispatchHandler(
                adapter=TwilioCallAdapter(client, settings, db),
                db=db,
                topics=topics,
                templates=templates,
                limits=SenderLimits(settings.caller.cps, settings.caller.burst),
                sending=settings.sending,
                callback_url=lambda dispatch_id: call_status_url(settings, dispatch_id),
                consumer=f"{service}.dispatch",
                source=f"cadencia/{service}",
            )
            runner = ConsumerRunner(
                name=f"{service}-dispatch",
                service=service,
                topics=[topics.dispatch("voice")],
                group_id=settings.consumer_group,
                kafka=settings.kafka,
                handler=handler,
                producer=producer,
                accept_types={"cadencia.contact.dispatched.v1"},
            )
            await runner.start()
            stack.push_async_callback(runner.stop)
            await templates_started
            stack.callback(handler.stop)  # runs first: calls waiting to retry give their dispatch back
            app.state.db, app.state.dispatch, app.state.runner, app.state.templates = db, handler, runner, templates
            app.state.relay = relay
            app.state.voice = VoiceContext(
                settings=settings,
                db=db,
                topics=topics,
                signature=TwilioSignature(settings.twilio.auth_token.get_secret_value()),
                source=f"cadencia/{service}",
            )
            app.state.ready_checks.extend([db.ping, producer.ping, runner.ping])
            yield

    app = build_app(settings, "Cadencia voice", lifespan)
    app.include_router(voice_webhooks())
    return app
