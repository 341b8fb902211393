"""Orchestrator runtime fixtures: the real app on the real broker and database, with a fake clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from services.orchestrator.app import create_app
from services.orchestrator.settings import Settings
from shared.config import DatabaseSettings, KafkaSettings
from shared.events import Topics
from shared.events.contracts import Account, ContactRequested, ContactRequestedEvent, Debtor, TemplateContent

#: Wednesday 2025-03-12 15:00 UTC: 11:00 in New York, 09:00 in Mexico City — lawful everywhere we test.
T0 = datetime(2025, 3, 12, 15, 0, tzinfo=UTC)
EDITOR = {"Authorization": "Bearer editor-key"}
VIEWER = {"Authorization": "Bearer viewer-key"}
API_KEYS = SecretStr("admin:admin-key,editor:editor-key,viewer:viewer-key")

_LINE = ("{{ creditor.name }}: tienes un saldo pendiente. A message from a debt collector. "
         "Reply STOP to opt out / Responde STOP para no recibir.")
TEMPLATES: dict[str, TemplateContent] = {
    "sms": TemplateContent(body=_LINE),
    "whatsapp": TemplateContent(body=_LINE),
    "email": TemplateContent(subject="{{ creditor.name }}: tu saldo pendiente", text=_LINE, html=f"<p>{_LINE}</p>"),
    "voice": TemplateContent(
        voice_script="Hola, le llamamos de parte de {{ creditor.name }} sobre su cuenta (a debt collector).",
        voicemail_script="Por favor devuelva la llamada a {{ creditor.name }}.",
    ),
}


class FakeClock:
    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_settings(kafka: KafkaSettings, database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "kafka": kafka,
        "database": DatabaseSettings(url=database_url, pool_size=5),
        "scheduler_interval": 0.05,
        "seed_templates": False,
        "api_keys": API_KEYS,
        "env": "test",
        # each test its own consumer group, as it has its own topics
        "consumer_group": f"{kafka.topic_prefix}orchestrator",
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class Orchestrator:
    app: FastAPI
    http: httpx.AsyncClient
    topics: Topics

    @property
    def runtime(self) -> Any:
        return self.app.state.runtime

    async def submit(self, *events: ContactRequestedEvent) -> httpx.Response:
        body = {"requests": [e.model_dump(mode="json") for e in events]}
        return await self.http.post("/v1/contact-requests", json=body, headers=EDITOR)

    async def publish(self, topic: str, event: Any) -> None:
        await self.app.state.ctx.producer.publish(topic, event)


async def publish_templates(app: FastAPI, key: str, channels: tuple[str, ...] = ("sms", "email", "voice", "whatsapp"),
                            locales: tuple[str, ...] = ("es-MX", "en-US")) -> None:
    from services.orchestrator.templates import template_store

    ctx = app.state.ctx
    async with ctx.db.transaction() as session:
        for channel in channels:
            for locale in locales:
                draft = template_store.Draft(channel=channel, locale=locale, variant="A",  # type: ignore[arg-type]
                                      content=TEMPLATES[channel], variables_schema={})
                row = await template_store.create_version(session, key, draft, ctx.clock())
                await template_store.publish(session, ctx.topics.templates, row, ctx.clock())


@asynccontextmanager
async def running(settings: Settings, clock: Callable[[], datetime],
                  templates: tuple[str, ...] = ("reminder",)) -> AsyncIterator[Orchestrator]:
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        for key in templates:
            await publish_templates(app, key)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://orchestrator") as http:
            yield Orchestrator(app, http, Topics(settings.kafka.topic_prefix))


@pytest.fixture
async def orchestrator(
    kafka_settings: KafkaSettings, database_url: str, clock: FakeClock
) -> AsyncIterator[Orchestrator]:
    async with running(make_settings(kafka_settings, database_url), clock, ("reminder", "opt_out_confirmation")) as o:
        yield o


def request_event(
    debtor_id: str,
    *,
    channel: str = "sms",
    jurisdiction: str = "US",
    time_zone: str | None = "America/New_York",
    phone: str | None = "+12125550123",
    email: str | None = "debtor@example.com",
    template: str = "reminder",
    account_id: str | None = None,
    days_past_due: int = 12,
    locale: str = "es-MX",
    currency: str = "USD",
    balance: str = "1234.50",
    **fields: Any,
) -> ContactRequestedEvent:
    debtor_fields = fields.pop("debtor", {})
    data = ContactRequested(
        debtor=Debtor(id=debtor_id, name="Ana Pérez", locale=locale, jurisdiction=jurisdiction, time_zone=time_zone,
                      phone=phone, email=email, **debtor_fields),
        account=Account(id=account_id or f"acc-{debtor_id}", product="card", balance=balance, currency=currency,
                        days_past_due=days_past_due, payment_url="https://pay.example.com/x"),
        channel=channel,  # type: ignore[arg-type]
        template=template,
        **fields,
    )
    return ContactRequestedEvent(source="tests", subject=debtor_id, data=data)


