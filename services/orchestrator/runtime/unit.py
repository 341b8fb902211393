"""The runtime every handler shares, and its unit of work (one transaction)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator.context import OrchestratorContext
from services.orchestrator.runtime.hooks import NO_HOOKS, RuntimeHooks
from services.orchestrator.runtime.strategy import Strategy


@dataclass
class Runtime:
    """What the handlers share: the context, the strategy and the loaded policy."""

    ctx: OrchestratorContext
    strategy: Strategy
    policy: Any
    jurisdictions: set[str] = field(default_factory=set)
    #: ``orchestrator_contact_status_total{status}`` on the app's registry (None outside an app).
    status_counter: Any = None
    #: Counters and campaign control (``services.orchestrator.ops``); no-ops by default.
    hooks: RuntimeHooks = NO_HOOKS
    _sqlite_writer: asyncio.Lock = field(default_factory=asyncio.Lock)

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[AsyncSession]:
        """``ctx.db.transaction()``; on SQLite one writer at a time in this process.

        SQLite serialises writers anyway (``BEGIN IMMEDIATE``); queueing them here instead of in
        SQLite's busy handler, which sleeps in growing steps, keeps concurrent partitions fast.
        """
        if self.postgres:
            async with self.ctx.db.transaction() as session:
                yield session
                await self.hooks.before_commit(session)
            return
        async with self._sqlite_writer, self.ctx.db.transaction() as session:
            yield session
            await self.hooks.before_commit(session)

    @property
    def postgres(self) -> bool:
        return self.ctx.db.is_postgres


@dataclass(frozen=True)
class IntakeResult:
    request_id: str
    status: str
    reason: str | None = None
    duplicate: bool = False

    def as_json(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "status": self.status, "reason": self.reason,
                "duplicate": self.duplicate}
