"""The ops features behind the runtime's seam (:class:`~services.orchestrator.runtime.hooks.RuntimeHooks`)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator.ops import control, counters
from services.orchestrator.runtime.hooks import Hold, RuntimeHooks
from services.orchestrator.runtime.models import AccountRow, ContactRequestRow
from services.orchestrator.runtime.operations import Runtime


class OpsHooks(RuntimeHooks):
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.variants: counters.VariantCache = {}

    def status(
        self, session: AsyncSession, request: ContactRequestRow, status: str, now: datetime, *,
        channel: str | None, reason: str | None, rules: Sequence[str], dispatch_id: str | None,
    ) -> None:
        counters.note_status(session, request, status, now, channel=channel, reason=reason, rules=rules,
                             dispatch_id=dispatch_id)

    def account(self, session: AsyncSession, account: AccountRow, status: str, now: datetime) -> None:
        counters.note_account(session, account, status, now)

    async def held(self, session: AsyncSession, request: ContactRequestRow, channel: str,
                   now: datetime) -> Hold | None:
        return await control.hold(session, request, channel)

    async def before_commit(self, session: AsyncSession) -> None:
        await counters.flush(session, self.rt.postgres, self.variants)
