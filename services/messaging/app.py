"""``create_message_app``: the app and lifespan every Twilio message channel service shares.

The lifespan owns, in start order: the database (migrated), the producer, the outbox relay, the
template cache, the Twilio client and the dispatch consumer; they stop in reverse. A channel adds
behaviour through :class:`ChannelHooks` (WhatsApp: the 24-hour window).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from fastapi import FastAPI

from services.messaging.adapter import TwilioMessageAdapter, WindowLookup
from services.messaging.keywords import KeywordClassifier
from services.messaging.settings import MessageServiceSettings
from services.messaging.webhooks import (
    InboundHook,
    WebhookContext,
    apply_status,
    status_callback_url,
    twilio_webhooks,
)
from shared.app import build_app
from shared.channels.lifespan import open_channel, start_dispatch, start_reconciler
from shared.channels.models import SendLogRecord
from shared.channels.reconcile import AskProvider
from shared.db import Database
from shared.db.parked import parked_outbox_router
from shared.events import utcnow
from shared.events.contracts import Channel
from shared.providers.twilio import TwilioMessages, TwilioSignature


def message_lookup(client: TwilioMessages, webhooks: WebhookContext) -> AskProvider:
    """Ask Twilio for a message's status and apply it as its status callback would have been."""

    async def ask(row: SendLogRecord) -> None:
        assert row.provider_id is not None
        resource = await client.fetch(row.provider_id)
        params = {"MessageSid": str(resource.get("sid") or row.provider_id),
                  "MessageStatus": str(resource.get("status") or "")}
        if resource.get("error_code"):
            params["ErrorCode"] = str(resource["error_code"])
        if resource.get("error_message"):
            params["ErrorMessage"] = str(resource["error_message"])
        await apply_status(webhooks, params, row.dispatch_id)

    return ask


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
    clock: Callable[[], datetime] = utcnow,
) -> FastAPI:
    """The app of a Twilio message channel; ``clock`` is what the dispatch pipeline compares a
    dispatch's ``deadline`` and ``send_before`` with."""
    service = settings.service_name

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            infra = await open_channel(settings, migrations, stack, app.state.metrics)
            client = TwilioMessages(settings.twilio, **settings.sending.client_options())
            stack.push_async_callback(client.aclose)
            extra = hooks(infra.db) if hooks is not None else ChannelHooks()
            await start_dispatch(
                app, settings, infra, stack,
                channel=channel,
                adapter=TwilioMessageAdapter(channel, client, settings.sender, extra.window_open),
                limits=infra.sender_limits(settings.sender.mps, settings.sender.burst, settings.sender.mps_by_sender),
                callback_url=lambda dispatch_id: status_callback_url(settings.public_url, dispatch_id),
                clock=clock,
            )
            app.state.webhooks = WebhookContext(
                channel=channel,
                db=infra.db,
                topics=infra.topics,
                signature=TwilioSignature(settings.twilio.auth_token.get_secret_value()),
                public_url=settings.public_url,
                classifier=KeywordClassifier(settings.keywords),
                source=f"cadencia/{service}",
                writer=infra.writer,
                on_inbound=extra.on_inbound,
            )
            await start_reconciler(app, settings, infra, stack, ask=message_lookup(client, app.state.webhooks),
                                   provider="twilio")
            yield

    app = build_app(settings, title, lifespan)
    webhooks = twilio_webhooks()
    app.include_router(webhooks)
    app.serve_directly(webhooks)  # the status callbacks, two per message: the short ASGI chain
    app.include_router(parked_outbox_router(lambda request: request.app.state.db))
    return app
