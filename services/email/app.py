"""``create_app(settings)`` for the email service; the lifespan owns every connection.

It is the message channels' pipeline (:class:`~shared.channels.dispatch.DispatchHandler`: send log,
at most once on ambiguity, retries, token bucket) with SendGrid as the provider. Start order: the
database (migrated), the producer, the outbox relay, the template cache, the SendGrid client and the
dispatch consumer; they stop in reverse.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from services.email.adapter import SendGridEmailAdapter
from services.email.settings import Settings
from services.email.tokens import UnsubscribeTokens
from services.email.unsubscribe import unsubscribe_routes
from services.email.webhooks import EVENTS_PATH, EmailWebhookContext, events_routes
from shared.app import build_app
from shared.channels.lifespan import open_channel, start_dispatch, start_reconciler
from shared.db.parked import parked_outbox_router
from shared.logging import get_logger
from shared.providers.sendgrid import EventWebhookVerifier, SendGridMail, fetch_sandbox_public_key

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
            infra = await open_channel(settings, MIGRATIONS, stack, app.state.metrics)
            client = SendGridMail(settings.sendgrid, **settings.sending.client_options())
            stack.push_async_callback(client.aclose)
            tokens = UnsubscribeTokens(settings.unsubscribe.secret.get_secret_value())
            events_url = settings.public_url.rstrip("/") + EVENTS_PATH
            await start_dispatch(
                app, settings, infra, stack,
                channel="email",
                adapter=SendGridEmailAdapter(
                    client, settings.sender, settings.unsubscribe, tokens, settings.public_url
                ),
                # One bucket: SendGrid limits requests per API key, whatever the from address.
                limits=infra.sender_limits(settings.sender.rate, settings.sender.burst),
                callback_url=lambda _dispatch_id: events_url,
            )
            app.state.webhooks = EmailWebhookContext(
                db=infra.db, topics=infra.topics, verifier=verifier, tokens=tokens, source=f"cadencia/{service}",
                writer=infra.writer,
            )
            # SendGrid's per-message lookup (Email Activity API) is a paid add-on the sandbox does not
            # serve: mail without a final event is only finalised, as unknown, after give_up_after_s.
            await start_reconciler(app, settings, infra, stack, ask=None, provider="sendgrid")
            yield

    app = build_app(settings, "Cadencia email", lifespan)
    app.include_router(events_routes())
    app.include_router(unsubscribe_routes())
    app.include_router(parked_outbox_router(lambda request: request.app.state.db))
    return app
