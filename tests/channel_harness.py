"""Running a channel service for a test: its lifespan, served over real HTTP so the sandbox can call it."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from sqlalchemy import func, select

from services.messaging.settings import SenderSettings
from services.sandbox.testing import SandboxHandle
from shared.bus import EventProducer
from shared.channels.models import SendLogRecord
from shared.channels.settings import SendingSettings
from shared.config import DatabaseSettings, KafkaSettings, TwilioSettings
from shared.events import Topics
from shared.events.contracts import (
    ContactDispatched,
    ContactDispatchedEvent,
    TemplateContent,
    TemplatePublished,
    TemplatePublishedEvent,
    TemplateRef,
)
from shared.ports import free_port as free_port  # the harness's tests take it from here
from tests.helpers import fresh, wait_for

SMS_BODY = (
    "Hola {{ debtor | first_name }}, tu saldo es {{ account.balance | money }}. Paga en {{ account | payment_link }}"
)
CONTENT_SID = "HX" + "0123456789abcdef" * 2


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@asynccontextmanager
async def serve_app(app: FastAPI, sock: socket.socket) -> AsyncIterator[uvicorn.Server]:
    """Serve ``app`` with uvicorn in this loop; its lifespan is run by the caller (``lifespan="off"``)."""
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    await wait_for(lambda: server.started or task.done(), timeout=10, interval=0.005, what="uvicorn started")
    if task.done():
        task.result()
    try:
        yield server
    finally:
        server.should_exit = True
        await task


def unique_number(suffix: str) -> str:
    """A fresh Mexican mobile number ending in ``suffix`` (the sandbox's outcome rules key on the last 4)."""
    return f"+52155{fresh(100_000):05d}{suffix}"


def service_settings(
    module: Any,
    kafka: KafkaSettings,
    database_url: str,
    sandbox: SandboxHandle,
    port: int,
    *,
    group: str,
    mps: float = 50.0,
    burst: int = 1,
    request_timeout_s: float = 2.0,
    max_in_flight: int = 32,
    max_claimed: int = 256,
) -> Any:
    return twilio_channel_settings(
        module.Settings, kafka, database_url, sandbox, port, group,
        SendingSettings(request_timeout_s=request_timeout_s, connect_timeout_s=1.0, retry_base_s=0.05,
                        retry_cap_s=1.0, max_in_flight=max_in_flight, max_claimed=max_claimed),
        sender=SenderSettings(from_number="+15005550006", mps=mps, burst=burst),
    )


def twilio_channel_settings(
    settings_cls: Any, kafka: KafkaSettings, database_url: str, sandbox: SandboxHandle, port: int, group: str,
    sending: SendingSettings, **channel: Any,
) -> Any:
    """A Twilio channel service's test settings on the sandbox; ``channel`` is the channel's own
    section (``sender=`` for SMS and WhatsApp, ``caller=`` for voice)."""
    return settings_cls(
        env="test",
        host="127.0.0.1",
        port=port,
        public_url=f"http://127.0.0.1:{port}",
        kafka=kafka,
        database=DatabaseSettings(url=database_url, pool_size=5),
        twilio=TwilioSettings(
            account_sid=sandbox.settings.twilio.account_sid,
            auth_token=sandbox.settings.twilio.auth_token,
            base_url=sandbox.url,
        ),
        sending=sending,
        orchestrator_url="http://127.0.0.1:9",  # templates come from the topic; the fallback is never needed
        consumer_group=group,
        **channel,
    )


@dataclass
class Running:
    app: FastAPI
    settings: Any
    url: str

    @property
    def webhooks(self) -> Any:
        return self.app.state.webhooks

    async def results_recorded(self) -> bool:
        """Every provider request this service made is counted in its send log: no send's result is
        still on its way to a commit. A row can look final before then: a provider callback proves the
        message arrived and marks it ``sent`` while its holder's result, with the attempt count and
        the end of its retry bookkeeping, is not yet committed."""
        async with self.app.state.db.read_sessions() as session:
            counted = (await session.execute(select(func.coalesce(func.sum(SendLogRecord.attempts), 0)))).scalar_one()
        made: int = self.app.state.dispatch.requests
        return int(counted) == made


@asynccontextmanager
async def running_service(module: Any, settings: Any, **options: Any) -> AsyncIterator[Running]:
    """``module`` is ``services.sms`` or ``services.whatsapp`` (its ``app`` and ``settings`` submodules);
    ``options`` go to its ``create_app`` (``clock=``)."""
    sock = free_socket_at(settings.port)
    app = module.create_app(settings, **options)
    async with app.router.lifespan_context(app), serve_app(app, sock):
        yield Running(app, settings, settings.public_url)


def free_socket_at(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


def template_event(key: str, channel: str, *, body: str | None = SMS_BODY, content_sid: str | None = None,
                   content_variables: dict[str, str] | None = None, locale: str = "es-MX") -> TemplatePublishedEvent:
    return TemplatePublishedEvent(
        subject=key,
        data=TemplatePublished(
            key=key, version=1, channel=channel, locale=locale,  # type: ignore[arg-type]
            content=TemplateContent(body=body, content_sid=content_sid, content_variables=content_variables),
            published_at=datetime.now(UTC),
        ),
    )


def dispatch_event(
    channel: str, to: str, template_key: str, *, debtor_id: str | None = None, deadline_s: float = 120.0,
    locale: str = "es-MX",
) -> ContactDispatchedEvent:
    debtor_id = debtor_id or f"debtor-{uuid.uuid4().hex[:8]}"
    return ContactDispatchedEvent(
        subject=debtor_id,
        source="cadencia/test",
        data=ContactDispatched(
            dispatch_id=str(uuid.uuid4()), request_id=str(uuid.uuid4()), debtor_id=debtor_id, account_id="acc-1",
            channel=channel, to=to, locale=locale,  # type: ignore[arg-type]
            template=TemplateRef(key=template_key, version=1),
            variables={
                "debtor": {"id": debtor_id, "name": "MARÍA López"},
                "account": {"id": "acc-1", "balance": "1234.50", "currency": "MXN",
                            "payment_url": "https://pay.example/a1"},
            },
            deadline=datetime.now(UTC) + timedelta(seconds=deadline_s),
        ),
    )


class Publisher:
    def __init__(self, kafka: KafkaSettings) -> None:
        self.topics = Topics(kafka.topic_prefix)
        self.producer = EventProducer(kafka, client_id="test-publisher")

    async def __aenter__(self) -> Publisher:
        await self.producer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.producer.stop()

    async def template(self, event: TemplatePublishedEvent) -> None:
        await self.producer.publish(self.topics.templates, event)

    async def dispatch(self, event: ContactDispatchedEvent) -> None:
        await self.producer.publish(self.topics.dispatch(event.data.channel), event)


async def template_cached(service: Running, key: str) -> None:
    await wait_for(lambda: service.app.state.templates.peek(key, 1) is not None, timeout=15, what=f"template {key}")


async def sandbox_messages(sandbox: SandboxHandle, to: str) -> list[dict[str, Any]]:
    return [r for r in await sandbox.requests(provider="twilio", to=to) if r["path"].endswith("/Messages.json")]


async def signed_post(
    url: str, auth_token: str, params: dict[str, str], signature: str | None = None
) -> httpx.Response:
    from shared.providers.twilio import TwilioSignature

    headers = {}
    if signature is None:
        signature = TwilioSignature(auth_token).sign(url, params)
    if signature:
        headers["X-Twilio-Signature"] = signature
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.post(url, data=params, headers=headers)
