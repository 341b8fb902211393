"""``create_message_app``: the app and lifespan every Twilio message channel service shares.

The lifespan owns, in start order: the database (migrated), the producer, the outbox relay, the
template cache, the Twilio client and the dispatch consumer; they stop in reverse. A channel adds
behaviour through :class:`ChannelHooks` (WhatsApp: the 24-hour window).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI

from shared.app import build_app
from shared.bus import ConsumerRunner, EventProducer, ensure_topics
from shared.channels.dispatch import DispatchHandler
from shared.channels.keywords import KeywordClassifier
from shared.channels.messaging import TwilioMessageAdapter, WindowLookup
from shared.channels.ratelimit import SenderLimits
from shared.channels.settings import MessageServiceSettings
from shared.channels.webhooks import InboundHook, WebhookContext, status_callback_url, twilio_webhooks
from shared.db import Database, OutboxRelay
from shared.db.migrate import upgrade
from shared.events import Topics
from shared.events.contracts import Channel
from shared.providers.twilio import TwilioMessages, TwilioSignature
from shared.templates.cache import TemplateCache


@dataclass(frozen=True)
class ChannelHooks:
    window_open: WindowLookup | None = None
    on_inbound: InboundHook | None = None


def create_message_app(
    settings: MessageServiceSettings,
    *,
    channel: Channel,
    title: str,
    migrations: Path,
    hooks: Callable[[Database], ChannelHooks] | None = None,
) -> FastAPI:
    service = settings.service_name

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            db = Database(settings.database)
            stack.push_async_callback(db.dispose)
            await upgrade(db, service, migrations)
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
            # Joining the cache's consumer group takes the broker's initial rebalance delay (3 s on the
            # embedded broker): overlap it with the dispatch consumer's join instead of waiting twice.
            templates_started = asyncio.create_task(templates.start(), name="template-cache-start")
            stack.push_async_callback(templates.stop)
            client = TwilioMessages(
                settings.twilio,
                timeout=settings.sending.request_timeout_s,
                connect_timeout=settings.sending.connect_timeout_s,
                max_connections=settings.sending.max_in_flight,
            )
            stack.push_async_callback(client.aclose)
            extra = hooks(db) if hooks is not None else ChannelHooks()
            adapter = TwilioMessageAdapter(channel, client, settings.sender, extra.window_open)
            handler = DispatchHandler(
                adapter=adapter,
                db=db,
                topics=topics,
                templates=templates,
                limits=SenderLimits(settings.sender.mps, settings.sender.burst, settings.sender.mps_by_sender),
                sending=settings.sending,
                callback_url=lambda dispatch_id: status_callback_url(settings.public_url, dispatch_id),
                consumer=f"{service}.dispatch",
                source=f"cadencia/{service}",
            )
            runner = ConsumerRunner(
                name=f"{service}-dispatch",
                service=service,
                topics=[topics.dispatch(channel)],
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
            app.state.webhooks = WebhookContext(
                channel=channel,
                db=db,
                topics=topics,
                signature=TwilioSignature(settings.twilio.auth_token.get_secret_value()),
                public_url=settings.public_url,
                classifier=KeywordClassifier(settings.keywords),
                source=f"cadencia/{service}",
                on_inbound=extra.on_inbound,
            )
            app.state.ready_checks.extend([db.ping, producer.ping, runner.ping])
            yield

    app = build_app(settings, title, lifespan)
    app.include_router(twilio_webhooks())
    return app
