"""Delivers webhook events: signed POSTs, retried with exponential backoff for 24 hours.

State is in the database: each tick claims the due deliveries (moving their next attempt one
lease ahead, ``SKIP LOCKED`` on PostgreSQL, so two instances never post the same attempt), posts
them concurrently, and records every attempt. A 2xx answer delivers; anything else schedules the
next attempt ``base * 2^(n-1)`` later (capped), until the retry window from the event has passed.
Delivery is at least once: receivers dedupe on ``webhook-id``, stable across retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from datetime import datetime, timedelta

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator.context import OrchestratorContext
from services.orchestrator.webhooks import signing
from services.orchestrator.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from services.orchestrator.webhooks.settings import WebhookSettings
from shared.logging import get_logger

log = get_logger(__name__)


def backoff(settings: WebhookSettings, attempts: int) -> timedelta:
    return timedelta(seconds=min(settings.backoff_base * 2 ** max(attempts - 1, 0), settings.backoff_max))


class WebhookDispatcher:
    def __init__(self, ctx: OrchestratorContext, settings: WebhookSettings, client: httpx.AsyncClient) -> None:
        self.ctx, self.settings, self.client = ctx, settings, client
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="webhook-dispatcher")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def ping(self) -> None:
        if self._task is not None and self._task.done():
            raise RuntimeError("webhook dispatcher stopped")

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.deliver_due()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database may be briefly away: try again next tick
                log.warning("webhook delivery pass failed; retrying", error=f"{type(exc).__name__}: {exc}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=self.settings.interval)

    async def deliver_due(self) -> int:
        """One pass: claim, post and record every due delivery; returns how many were attempted."""
        now = self.ctx.clock()
        async with self.ctx.db.transaction() as session:
            stmt = (select(WebhookDelivery, WebhookEndpoint)
                    .join(WebhookEndpoint, WebhookEndpoint.id == WebhookDelivery.endpoint_id)
                    .where(WebhookDelivery.state == "pending", WebhookDelivery.next_attempt_at <= now)
                    .order_by(WebhookDelivery.next_attempt_at).limit(self.settings.batch_size))
            if self.ctx.db.is_postgres:
                stmt = stmt.with_for_update(skip_locked=True, of=WebhookDelivery)
            claimed = [(d, e.url, e.secret, e.active) for d, e in (await session.execute(stmt)).all()]
            for delivery, *_ in claimed:
                delivery.next_attempt_at = now + timedelta(seconds=self.settings.lease)
            jobs = [(d.id, d.payload, url, secret, active) for d, url, secret, active in claimed]
        if not jobs:
            return 0
        results = await asyncio.gather(*(self._post(*job) for job in jobs if job[4]))
        async with self.ctx.db.transaction() as session:
            for delivery_id, status_code, error, duration_ms in results:
                await self._record(session, delivery_id, status_code, error, duration_ms)
            for delivery_id, *_rest, active in jobs:
                if not active:  # the endpoint was disabled: stop trying
                    row = await session.get(WebhookDelivery, delivery_id)
                    if row is not None:
                        row.state, row.finished_at = "failed", self.ctx.clock()
        return len(results)

    async def _post(self, delivery_id: str, payload: dict[str, object], url: str, secret: str,
                    _active: bool) -> tuple[str, int | None, str | None, int]:
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        headers = signing.headers(secret, delivery_id, int(self.ctx.clock().timestamp()), body)
        started = time.perf_counter()
        try:
            answer = await self.client.post(url, content=body, headers=headers, timeout=self.settings.timeout)
            status, error = answer.status_code, None if answer.is_success else answer.text[:500]
        except httpx.HTTPError as exc:
            status, error = None, f"{type(exc).__name__}: {exc}"[:500]
        return delivery_id, status, error, int((time.perf_counter() - started) * 1000)

    async def _record(self, session: AsyncSession, delivery_id: str, status_code: int | None, error: str | None,
                      duration_ms: int) -> None:
        now: datetime = self.ctx.clock()
        row = await session.get(WebhookDelivery, delivery_id)
        if row is None:
            return
        session.add(WebhookAttempt(delivery_id=delivery_id, at=now, status_code=status_code, error=error,
                                   duration_ms=duration_ms))
        row.attempts += 1
        if status_code is not None and 200 <= status_code < 300:
            row.state, row.finished_at = "delivered", now
            return
        next_at = now + backoff(self.settings, row.attempts)
        if next_at > row.created_at + timedelta(seconds=self.settings.retry_window):
            row.state, row.finished_at = "failed", now
            log.warning("webhook delivery given up", delivery_id=delivery_id, attempts=row.attempts)
        else:
            row.next_attempt_at = next_at
