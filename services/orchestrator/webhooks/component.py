"""Outgoing webhooks for systems without Kafka: register an endpoint and the event types it wants.

A consumer of the status and outcome topics (its own group) turns each event into one delivery
per subscribed endpoint, in the transaction that marks the event seen; the dispatcher posts them.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from contextlib import AsyncExitStack
from datetime import datetime
from typing import Literal
from urllib.parse import urlparse

import httpx
from fastapi import APIRouter, FastAPI, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator.context import CtxDep, OrchestratorContext
from services.orchestrator.webhooks import signing
from services.orchestrator.webhooks.delivery import WebhookDispatcher
from services.orchestrator.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from shared.bus import ConsumerRunner, RecordMeta
from shared.db import first_times
from shared.events import AnyEvent
from shared.http import DB_INT_MAX, PROBLEM_RESPONSES, AdminKeyDep, Problem

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"], responses=PROBLEM_RESPONSES)

EVENT_TYPES = (
    "cadencia.contact.status_changed.v1",
    "cadencia.contact.delivery_updated.v1",
    "cadencia.contact.response_received.v1",
)
EventType = Literal[
    "cadencia.contact.status_changed.v1",
    "cadencia.contact.delivery_updated.v1",
    "cadencia.contact.response_received.v1",
    "*",
]


class EndpointIn(BaseModel):
    url: str = Field(min_length=8, max_length=2000)
    event_types: list[EventType] = Field(min_length=1)
    description: str = Field("", max_length=300)

    @field_validator("url")
    @classmethod
    def _absolute(cls, url: str) -> str:
        parsed = urlparse(url)
        if parsed.scheme not in ("https", "http") or not parsed.netloc:
            raise ValueError("an absolute https:// URL")
        return url


class EndpointView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    url: str
    event_types: list[str]
    description: str
    active: bool
    created_by: str
    created_at: datetime


class EndpointCreated(EndpointView):
    #: Shown once: the receiver verifies ``webhook-signature`` with it.
    secret: str


class EndpointList(BaseModel):
    items: list[EndpointView]


class AttemptView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    at: datetime
    status_code: int | None = None
    error: str | None = None
    duration_ms: int


class DeliveryView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    endpoint_id: str
    event_id: str
    event_type: str
    state: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: datetime | None = None
    created_at: datetime
    finished_at: datetime | None = None
    attempt_log: list[AttemptView] = Field(default_factory=list)


class DeliveryPage(BaseModel):
    total: int
    items: list[DeliveryView]


async def _endpoint(ctx: OrchestratorContext, endpoint_id: str) -> WebhookEndpoint:
    async with ctx.db.sessions() as session:
        row = await session.get(WebhookEndpoint, endpoint_id)
    if row is None:
        raise Problem(404, "Not found", f"no webhook endpoint {endpoint_id!r}", "/problems/not-found")
    return row


@router.post("", status_code=201, response_model=EndpointCreated, operation_id="create_webhook_endpoint")
async def create_endpoint(body: EndpointIn, ctx: CtxDep, who: AdminKeyDep) -> EndpointCreated:
    """Register a receiver; every event of the listed types is POSTed to it, signed with its secret."""
    if ctx.settings.env == "production" and not body.url.startswith("https://"):
        raise Problem(422, "Invalid request", "webhook URLs must be https:// in production", "/problems/validation")
    row = WebhookEndpoint(id=uuid.uuid4().hex, url=body.url, event_types=list(dict.fromkeys(body.event_types)),
                          secret=signing.new_secret(), description=body.description, active=True,
                          created_by=who.name, created_at=ctx.clock())
    async with ctx.db.transaction() as session:
        session.add(row)
    return EndpointCreated.model_validate(row)


@router.get("", response_model=EndpointList, operation_id="list_webhook_endpoints")
async def list_endpoints(ctx: CtxDep, who: AdminKeyDep) -> EndpointList:
    async with ctx.db.sessions() as session:
        rows = (await session.execute(select(WebhookEndpoint).order_by(WebhookEndpoint.created_at))).scalars()
        return EndpointList(items=[EndpointView.model_validate(r) for r in rows])


@router.delete("/{endpoint_id}", response_model=EndpointView, operation_id="disable_webhook_endpoint")
async def disable_endpoint(endpoint_id: str, ctx: CtxDep, who: AdminKeyDep) -> EndpointView:
    """Stop delivering to an endpoint (its deliveries and attempts stay visible)."""
    await _endpoint(ctx, endpoint_id)
    async with ctx.db.transaction() as session:
        row = await session.get(WebhookEndpoint, endpoint_id)
        assert row is not None
        row.active = False
        return EndpointView.model_validate(row)


async def _with_attempts(ctx: OrchestratorContext, rows: list[WebhookDelivery]) -> list[DeliveryView]:
    ids = [r.id for r in rows]
    async with ctx.db.sessions() as session:
        attempts = (await session.execute(select(WebhookAttempt).where(WebhookAttempt.delivery_id.in_(ids))
                                          .order_by(WebhookAttempt.id))).scalars().all() if ids else []
    by_delivery: dict[str, list[AttemptView]] = {}
    for a in attempts:
        by_delivery.setdefault(a.delivery_id, []).append(AttemptView.model_validate(a))
    views = []
    for r in rows:
        view = DeliveryView.model_validate(r)
        views.append(view.model_copy(update={
            "attempt_log": by_delivery.get(r.id, []),
            "next_attempt_at": r.next_attempt_at if r.state == "pending" else None,
        }))
    return views


@router.get("/{endpoint_id}/deliveries", response_model=DeliveryPage, operation_id="list_webhook_deliveries")
async def list_deliveries(
    endpoint_id: str, ctx: CtxDep, who: AdminKeyDep,
    state: Literal["pending", "delivered", "failed"] | None = None,
    limit: int = Query(50, ge=1, le=500), offset: int = Query(0, ge=0, le=DB_INT_MAX),
) -> DeliveryPage:
    """Deliveries to an endpoint, newest first, each with its attempts (status code, error, duration)."""
    await _endpoint(ctx, endpoint_id)
    where = [WebhookDelivery.endpoint_id == endpoint_id]
    if state:
        where.append(WebhookDelivery.state == state)
    async with ctx.db.sessions() as session:
        total = int(await session.scalar(select(func.count()).select_from(WebhookDelivery).where(*where)) or 0)
        rows = list((await session.execute(select(WebhookDelivery).where(*where)
                                           .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id)
                                           .limit(limit).offset(offset))).scalars())
    return DeliveryPage(total=total, items=await _with_attempts(ctx, rows))


@router.get("/{endpoint_id}/deliveries/{delivery_id}", response_model=DeliveryView,
            operation_id="get_webhook_delivery")
async def get_delivery(endpoint_id: str, delivery_id: str, ctx: CtxDep, who: AdminKeyDep) -> DeliveryView:
    async with ctx.db.sessions() as session:
        row = await session.get(WebhookDelivery, delivery_id)
    if row is None or row.endpoint_id != endpoint_id:
        raise Problem(404, "Not found", f"no delivery {delivery_id!r}", "/problems/not-found")
    return (await _with_attempts(ctx, [row]))[0]


class WebhookIntake:
    """The consumer's handler: the events of a fetch become deliveries to the endpoints subscribed to them.

    With no active endpoint subscribed to any of them (the usual case of a deployment that reads Kafka)
    a fetch costs one read and no write. Otherwise the events with a subscriber are marked in the inbox
    and their deliveries added in one transaction; an event no endpoint wanted needs no mark (handled
    again, it would find the endpoints of that time, and the inbox still dedupes every event that got
    a delivery).
    """

    def __init__(self, ctx: OrchestratorContext, consumer: str) -> None:
        self.ctx, self.consumer = ctx, consumer

    async def __call__(self, items: Sequence[tuple[AnyEvent, RecordMeta]]) -> None:
        async with self.ctx.db.read_sessions() as session:
            if not _wanted(await _active(session), [event for event, _ in items]):
                return
        now = self.ctx.clock()
        async with self.ctx.db.transaction() as session:
            wanted = _wanted(await _active(session), [event for event, _ in items])  # as of this transaction
            fresh = await first_times(session, [(self.consumer, event.id) for event, _ in wanted])
            for event, endpoints in wanted:
                if (self.consumer, event.id) not in fresh:
                    continue
                fresh.discard((self.consumer, event.id))  # a repeat within the fetch is a duplicate too
                payload = event.model_dump(mode="json")
                session.add_all(WebhookDelivery(
                    id=f"msg_{uuid.uuid4().hex}", endpoint_id=endpoint.id, event_id=event.id,
                    event_type=event.type, payload=payload, state="pending", attempts=0,
                    next_attempt_at=now, created_at=now,
                ) for endpoint in endpoints)

    async def one(self, event: AnyEvent, meta: RecordMeta) -> None:
        await self([(event, meta)])

    async def wanted_types(self) -> frozenset[str] | None:
        """The event types some active endpoint is subscribed to (None: every type, for ``*``). Asked
        by the consumer once a fetch, so that with no endpoint (the usual case) the status and outcome
        events, about six a contact request, pass by without being read (docs/benchmarks.md,
        eighteenth round)."""
        async with self.ctx.db.read_sessions() as session:
            endpoints = await _active(session)
        types = {t for endpoint in endpoints for t in endpoint.event_types}
        return None if "*" in types else frozenset(types)


async def _active(session: AsyncSession) -> list[WebhookEndpoint]:
    return list((await session.execute(select(WebhookEndpoint).where(WebhookEndpoint.active.is_(True)))).scalars())


def _wanted(endpoints: list[WebhookEndpoint], events: list[AnyEvent]
            ) -> list[tuple[AnyEvent, list[WebhookEndpoint]]]:
    """Each event with the endpoints subscribed to its type, in order; events nobody wants left out."""
    if not endpoints:
        return []
    found = []
    for event in events:
        subscribed = [e for e in endpoints if event.type in e.event_types or "*" in e.event_types]
        if subscribed:
            found.append((event, subscribed))
    return found


class WebhooksComponent:
    def install(self, app: FastAPI) -> None:
        app.include_router(router)

    async def start(self, app: FastAPI, ctx: OrchestratorContext, stack: AsyncExitStack) -> None:
        intake = WebhookIntake(ctx, f"{ctx.settings.consumer_group}-webhooks")
        runner = ConsumerRunner(
            name="webhooks", service="orchestrator", topics=[ctx.topics.contact_status, ctx.topics.contact_outcomes],
            group_id=intake.consumer, kafka=ctx.settings.kafka, handler=intake.one, batch_handler=intake,
            producer=ctx.producer, accept_types=set(EVENT_TYPES),
            # the dispatcher posts once a second (``webhooks.interval``): a fetch may wait half a second too
            idle=True, wanted_types=intake.wanted_types,
        )
        await runner.start()
        stack.push_async_callback(runner.stop)
        app.state.webhooks_consumer = runner
        client = httpx.AsyncClient(follow_redirects=False, headers={"user-agent": "cadencia-webhooks/1"})
        stack.push_async_callback(client.aclose)
        dispatcher = WebhookDispatcher(ctx, ctx.settings.webhooks, client)
        await dispatcher.start()
        stack.push_async_callback(dispatcher.stop)
        app.state.webhooks = dispatcher
        app.state.ready_checks.extend([runner.ping, dispatcher.ping])


component = WebhooksComponent()
