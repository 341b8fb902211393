"""What every channel service's lifespan starts, whatever its provider.

:func:`open_channel` brings up, in order, the database (migrated), the producer, the outbox relay and
the template cache; :func:`start_dispatch` adds the dispatch consumer around a channel's adapter. Each
registers its cleanup on the caller's ``AsyncExitStack``, so everything stops in reverse order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from redis.asyncio import Redis

from shared.app import abandon_hook, fatal_hook
from shared.bus import ConsumerRunner, EventProducer, ensure_topics
from shared.bus.admin import TopicGuard
from shared.channels.deferred import DeferredSends
from shared.channels.dispatch import DispatchHandler
from shared.channels.metrics import instrument
from shared.channels.models import receipts_target
from shared.channels.ports import ChannelAdapter
from shared.channels.ratelimit import SenderLimits
from shared.channels.ratelimit_redis import RedisSenderLimits
from shared.channels.reconcile import AskProvider, Reconciler
from shared.channels.settings import ChannelServiceSettings
from shared.config import RetentionSettings
from shared.db import Database, GroupWriter, OutboxRelay
from shared.db.attempts import ConsumerAttempts
from shared.db.migrate import prepare_schema
from shared.db.retention import Pruner, PruneTarget, attempts_target, inbox_target
from shared.events import Topics, utcnow
from shared.events.contracts import Channel
from shared.templates.cache import TemplateCache
from shared.tracing import callback_url as traced_url


@dataclass
class ChannelInfrastructure:
    db: Database
    topics: Topics
    producer: EventProducer
    relay: OutboxRelay
    templates: TemplateCache
    templates_started: asyncio.Task[None]
    #: Commits send results and webhooks in groups (docs/internals.md: batches); stops after the consumers
    #: and the server.
    writer: GroupWriter
    service: str = ""
    redis: Redis | None = None
    pruner: Pruner | None = None

    def sender_limits(self, rate: float, burst: int = 1, rates: dict[str, float] | None = None) -> SenderLimits:
        """Per-sender limits: in Redis, shared by every replica, when ``REDIS_URL`` is set; else per process."""
        if self.redis is None:
            return SenderLimits(rate, burst, rates)
        prefix = f"{self.topics.prefix}ratelimit:{self.service}:"
        return RedisSenderLimits(self.redis, prefix, rate, burst, rates)


def retention_targets(retention: RetentionSettings) -> list[PruneTarget]:
    """What a channel service prunes: its inbox, consumer attempts and webhook receipts."""
    return [inbox_target(retention), attempts_target(retention), receipts_target(retention)]


async def open_channel(
    settings: ChannelServiceSettings, migrations: Path, stack: AsyncExitStack, metrics: Any = None
) -> ChannelInfrastructure:
    service = settings.service_name
    db = Database(settings.database)
    stack.push_async_callback(db.dispose)
    await prepare_schema(db, service, migrations, migrate=bool(settings.migrate_on_start))
    if settings.create_topics:
        await ensure_topics(settings.kafka)
    producer = EventProducer(settings.kafka, client_id=service)
    await producer.start()
    stack.push_async_callback(producer.stop)
    relay = OutboxRelay(db, producer, metrics=metrics)
    await relay.start()
    stack.push_async_callback(relay.stop)
    pruner = Pruner(db, retention_targets(settings.retention), settings.retention, registry=metrics)
    await pruner.start()
    stack.push_async_callback(pruner.stop)
    writer = GroupWriter(db, name=f"{service}-writer")
    if metrics is not None:
        metrics.register(writer.metrics)
    await writer.start()
    stack.push_async_callback(writer.stop)  # stops before the relay: what it commits is still published
    templates = TemplateCache(
        settings.kafka, settings.orchestrator_url, settings.orchestrator_api_key.get_secret_value()
    )
    # Joining the cache's consumer group takes the broker's initial rebalance delay (3 s on the
    # embedded broker): overlap it with the dispatch consumer's join instead of waiting twice.
    templates_started = asyncio.create_task(templates.start(), name="template-cache-start")
    stack.push_async_callback(templates.stop)
    # Short timeouts: a hung Redis must turn into the local fallback quickly, not into a stalled send.
    redis = (
        Redis.from_url(settings.redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)
        if settings.redis_url else None
    )
    if redis is not None:
        stack.push_async_callback(redis.aclose)
    return ChannelInfrastructure(
        db, Topics(settings.kafka.topic_prefix), producer, relay, templates, templates_started, writer, service, redis,
        pruner,
    )


async def start_dispatch(
    app: FastAPI,
    settings: ChannelServiceSettings,
    infra: ChannelInfrastructure,
    stack: AsyncExitStack,
    *,
    channel: Channel,
    adapter: ChannelAdapter,
    limits: SenderLimits,
    callback_url: Callable[[str], str],
    clock: Callable[[], datetime] = utcnow,
) -> DispatchHandler:
    """Consume ``dispatch.<channel>`` through the shared send log; ready checks and app state included."""
    service = settings.service_name
    adapter, limits = instrument(app, channel, adapter, limits)  # sends, provider latency, rate-limit waits
    handler = DispatchHandler(
        adapter=adapter,
        db=infra.db,
        writer=infra.writer,
        topics=infra.topics,
        templates=infra.templates,
        limits=limits,
        sending=settings.sending,
        # The provider's callbacks continue the dispatch's trace (it rides in the callback URL).
        callback_url=lambda dispatch_id: traced_url(callback_url(dispatch_id)),
        consumer=f"{service}.dispatch",
        source=f"cadencia/{service}",
        clock=clock,
    )
    runner = ConsumerRunner(
        name=f"{service}-dispatch",
        service=service,
        topics=[infra.topics.dispatch(channel)],
        group_id=settings.consumer_group,
        kafka=settings.kafka,
        handler=handler,
        batch_handler=handler.batch,  # a getmany batch is one claim transaction (docs/internals.md: batches)
        producer=infra.producer,
        accept_types={"cadencia.contact.dispatched.v1"},
        crash_log=ConsumerAttempts(infra.db),
        on_fatal=fatal_hook(app),
    )
    app.state.metrics.register(runner.metrics)
    await runner.start()
    stack.push_async_callback(runner.stop)
    await infra.templates_started
    deferred = DeferredSends(handler, clock=clock)  # sends deferred out of their batch (stuck senders)
    await deferred.start()
    stack.push_async_callback(deferred.stop)  # before the writer: what it resumes is recorded
    stack.callback(handler.stop)  # runs first: sends waiting to retry give their dispatch back
    app.state.db, app.state.dispatch, app.state.runner = infra.db, handler, runner
    app.state.deferred = deferred
    app.state.templates, app.state.relay, app.state.pruner = infra.templates, infra.relay, infra.pruner
    app.state.writer = infra.writer
    guard = TopicGuard(infra.producer, settings.kafka, abandon_hook(app) if settings.create_topics else None)
    await guard.start()
    stack.push_async_callback(guard.stop)
    app.state.ready_checks.extend(
        [infra.db.ping, infra.producer.ping, runner.ping, infra.writer.ping, deferred.ping, guard.ping]
    )
    # Redis is not a readiness check: without it the limits fall back to per process, and an unready
    # pod would also stop receiving the provider webhooks.
    return handler


async def start_reconciler(
    app: FastAPI, settings: ChannelServiceSettings, infra: ChannelInfrastructure, stack: AsyncExitStack,
    *, ask: AskProvider | None, provider: str,
) -> Reconciler:
    """Finalise messages whose provider callbacks never arrived (``shared.channels.reconcile``)."""
    reconciler = Reconciler(db=infra.db, topics=infra.topics, sending=settings.sending, ask=ask,
                            source=f"cadencia/{settings.service_name}", provider=provider)
    await reconciler.start()
    stack.push_async_callback(reconciler.stop)
    app.state.reconciler = reconciler
    app.state.ready_checks.append(reconciler.ping)
    return reconciler
