"""``create_app(settings)`` for the voice service; the lifespan owns every connection.

In start order: the database (migrated), the producer, the outbox relay, the template cache, the
agent-queue pacer (in Redis with ``REDIS_URL``), the Twilio Calls client and the dispatch consumer (the
shared :class:`~shared.channels.dispatch.DispatchHandler` with the Calls adapter: same send log,
at-most-once and retry rules as SMS); they stop in reverse.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI

from services.voice.abandonment import AbandonmentFigures
from services.voice.agents import agent_routes
from services.voice.calls import TwilioCallAdapter, call_status_url
from services.voice.pacing import LocalPacingStore, Pacer, PacingStore
from services.voice.pacing_redis import RedisPacingStore
from services.voice.recordings import recording_webhooks
from services.voice.settings import Settings
from services.voice.webhooks import VoiceContext, apply_call_status, voice_webhooks
from shared.app import build_app
from shared.channels.lifespan import ChannelInfrastructure, open_channel, start_dispatch, start_reconciler
from shared.channels.models import SendLogRecord
from shared.channels.reconcile import AskProvider
from shared.db.parked import parked_outbox_router
from shared.providers.twilio import TwilioCalls, TwilioSignature

MIGRATIONS = Path(__file__).parent / "migrations" / "versions"


def call_lookup(client: TwilioCalls, voice: VoiceContext) -> AskProvider:
    """Ask Twilio for a call's status (``GET …/Calls/{sid}.json``) and apply it as its callback would."""

    async def ask(row: SendLogRecord) -> None:
        assert row.provider_id is not None
        resource = await client.fetch(row.provider_id)
        params = {"CallSid": str(resource.get("sid") or row.provider_id),
                  "CallStatus": str(resource.get("status") or "")}
        if resource.get("answered_by"):
            params["AnsweredBy"] = str(resource["answered_by"])
        await apply_call_status(voice, params, row.dispatch_id)

    return ask


def pacer(settings: Settings, infra: ChannelInfrastructure) -> Pacer:
    """Agent-queue pacing: shared by every instance through Redis when ``REDIS_URL`` is set, else per process;
    each campaign's abandoned-call figure from this service's database."""
    rules = settings.pacing
    store: PacingStore = (
        RedisPacingStore(infra.redis, f"{infra.topics.prefix}pacing:", flight_ttl_s=rules.flight_ttl_s)
        if infra.redis is not None else LocalPacingStore()
    )
    figures = AbandonmentFigures(infra.db, window=timedelta(days=rules.window_days), ttl_s=rules.figure_ttl_s)
    return Pacer(store, min_samples=rules.min_samples, abandon_cap=rules.abandon_cap,
                 throttle_share=rules.throttle_share, figures=figures)


def create_app(settings: Settings) -> FastAPI:
    service = settings.service_name

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            infra = await open_channel(settings, MIGRATIONS, stack, app.state.metrics)
            app.state.pacer = pacer(settings, infra)
            client = TwilioCalls(settings.twilio, **settings.sending.client_options())
            stack.push_async_callback(client.aclose)
            await start_dispatch(
                app, settings, infra, stack,
                channel="voice",
                adapter=TwilioCallAdapter(client, settings, infra.db, app.state.pacer),
                limits=infra.sender_limits(settings.caller.cps, settings.caller.burst),
                callback_url=lambda dispatch_id: call_status_url(settings, dispatch_id),
            )
            app.state.voice = VoiceContext(
                settings=settings,
                db=infra.db,
                topics=infra.topics,
                signature=TwilioSignature(settings.twilio.auth_token.get_secret_value()),
                source=f"cadencia/{service}",
                writer=infra.writer,
                pacer=app.state.pacer,
            )
            await start_reconciler(app, settings, infra, stack, ask=call_lookup(client, app.state.voice),
                                   provider="twilio")
            yield

    app = build_app(settings, "Cadencia voice", lifespan)
    app.include_router(agent_routes())
    app.include_router(voice_webhooks())
    app.include_router(parked_outbox_router(lambda request: request.app.state.db))
    app.include_router(recording_webhooks())
    return app
