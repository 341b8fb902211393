"""``create_app(settings)``: the sandbox app; its lifespan owns the callback client and every task."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from fastapi import FastAPI

from services.sandbox import control, sendgrid_api, twilio_api, voice
from services.sandbox.callbacks import CallbackSender
from services.sandbox.clock import Clock, Scheduler, SystemClock
from services.sandbox.faults import FaultInjector
from services.sandbox.settings import Settings
from services.sandbox.signing import EventWebhookSigner, load_private_key
from services.sandbox.state import Sandbox
from shared.app import build_app
from shared.logging import get_logger
from shared.providers.http import KEEPALIVE_S

log = get_logger(__name__)
_DEV_KEY_SEED = "cadencia-sandbox-sendgrid-event-webhook"


def create_app(settings: Settings, clock: Clock | None = None) -> FastAPI:
    clock = clock or SystemClock()
    seed = _DEV_KEY_SEED if settings.env == "development" else None
    # Built here, not in the lifespan, so the public key is known before the server starts.
    signer = EventWebhookSigner(load_private_key(settings.sendgrid_webhook_private_key.get_secret_value(), seed))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Idle connections to the receivers dropped before a uvicorn receiver (5 s) closes them.
        connector = aiohttp.TCPConnector(limit=settings.callback_concurrency, keepalive_timeout=KEEPALIVE_S)
        timeout = aiohttp.ClientTimeout(total=settings.callback_timeout_s)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout, trust_env=False) as client:
            scheduler = Scheduler(clock, settings.speed_factor)
            faults = FaultInjector(settings.faults)
            sender = CallbackSender(
                client,
                scheduler,
                concurrency=settings.callback_concurrency,
                retries=settings.callback_retries,
                max_records=settings.max_records,
                faults=faults,
            )
            sandbox = Sandbox(settings, clock, scheduler, sender, signer, faults)
            app.state.sandbox = sandbox
            log.info("sandbox_started", speed_factor=settings.speed_factor, port=settings.port)
            try:
                yield
            finally:
                sandbox.closing.set()
                await scheduler.aclose()

    app = build_app(settings, "Cadencia provider sandbox (Twilio, SendGrid)", lifespan)
    app.state.signer = signer
    app.include_router(twilio_api.router)
    app.include_router(voice.router)
    app.include_router(sendgrid_api.router)
    app.include_router(control.router)
    return app
