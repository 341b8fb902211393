"""``create_app(settings)`` for the email service; the lifespan owns every connection.

It is the message channels' pipeline (:class:`~shared.channels.dispatch.DispatchHandler`: send log,
at most once on ambiguity, retries, token bucket) with SendGrid as the provider. Start order: the
database (migrated), the producer, the outbox relay, the template cache, the SendGrid client and the
dispatch consumer; they stop in reverse.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from services.email.settings import Settings
from shared.app import build_app
from shared.bus import ConsumerRunner, EventProducer, ensure_topics
from shared.channels.dispatch import DispatchHandler
from shared.channels.email import (
    EVENTS_PATH,
    EmailWebhookContext,
    SendGridEmailAdapter,
    UnsubscribeTokens,
    email_routes,
)
from shared.channels.ratelimit import SenderLimits
from shared.db import Database, OutboxRelay
from shared.db.migrate import upgrade
from shared.events import Topics
from shared.logging import get_logger
from shared.providers.sendgrid import EventWebhookVerifier, SendGridMail, fetch_sandbox_public_key
from shared.templates.cache import TemplateCache

MIGRATIONS = Path(__file__).parent / "migrations" / "versions"
log = get_logger(__name__)


async def webhook_public_key(settings: Settings) -> str:
    """The configured verification key; outside production, the sandbox's when none is configured."""
    if settings.sendgrid.webhook_public_key:
        return settings.sendgrid.webhook_public_key
    key = await fetch_sandbox_public_key(settings.sendgrid.base_url)
    log.info("event webhook key fetched from the provider sandbox", base_url=settings.sendgrid.base_url)
    return key


def create_app(settings: Settings) -> FastAPI:
    service = settings.service_name

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            verifier = EventWebhookVerifier(await webhook_public_key(settings), max_age_s=settings.webhook_max_age_s)
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
            # Overlap the cache's consumer-group join with the dispatch consumer's (see shared.channels.service).
            templates_started = asyncio.create_task(templates.start(), name="template-cache-start")
            stack.push_async_callback(templates.stop)
            client = SendGridMail(
                settings.sendgrid,
                timeout=settings.sending.request_timeout_s,
                connect_timeout=settings.sending.connect_timeout_s,
                max_connections=settings.sending.max_in_flight,
            )
            stack.push_async_callback(client.aclose)
            tokens = UnsubscribeTokens(settings.unsubscribe.secret.get_secret_value())
            adapter = SendGridEmailAdapter(client, settings.sender, settings.unsubscribe, tokens, settings.public_url)
            events_url = settings.public_url.rstrip("/") + EVENTS_PATH
            handler = DispatchHandler(
                adapter=adapter,
                db=db,
                topics=topics,
                templates=templates,
                # One bucket: SendGrid limits requests per API key, whatever the from address.
                limits=SenderLimits(settings.sender.rate, settings.sender.burst),
                sending=settings.sending,
                callback_url=lambda _dispatch_id: events_url,
                consumer=f"{service}.dispatch",
                source=f"cadencia/{service}",
            )
            runner = ConsumerRunner(
                name=f"{service}-dispatch",
                service=service,
                topics=[topics.dispatch("email")],
                group_id=settings.consumer_group,
                kafka=settings.kafka,
                handler=handler,
                producer=producer,
                accept_types={"cadencia.contact.dispatched.v1"},
            )
            await runner.start()
            stack.push_async_callback(runner.stop)
            await templates_started
            stack.callback(handler.stop)  # runs first: sends waiting to retry give their dispatch back
            app.state.db, app.state.dispatch, app.state.runner, app.state.templates = db, handler, runner, templates
            app.state.relay = relay
            app.state.webhooks = EmailWebhookContext(
                db=db, topics=topics, verifier=verifier, tokens=tokens, source=f"cadencia/{service}"
            )
            app.state.ready_checks.extend([db.ping, producer.ping, runner.ping])
            yield

    app = build_app(settings, "Cadencia email", lifespan)
    app.include_router(email_routes())
    return app
