"""The runtime's one seam for ops features: what it tells them and what it asks them, per transaction.

The runtime calls :meth:`RuntimeHooks.status` for every status change and :meth:`account` for every
account state change of a transaction, :meth:`held` before it dispatches (and defers what it holds),
and :meth:`before_commit` last, inside the same transaction. The ops package (counters, campaign
control) implements it; the runtime knows nothing more about it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

if TYPE_CHECKING:
    from services.orchestrator.runtime.models import AccountRow, ContactRequestRow


@dataclass(frozen=True)
class Hold:
    """Why a dispatch must wait, and until when (the runtime defers the contact with these)."""

    reason: str
    rules: tuple[str, ...]
    until: datetime


class RuntimeHooks:
    """No-op hooks: a runtime without ops features (unit tests, tools)."""

    def status(
        self, session: AsyncSession, request: ContactRequestRow, status: str, now: datetime, *,
        channel: str | None, reason: str | None, rules: Sequence[str], dispatch_id: str | None,
    ) -> None:
        """A status change of ``request`` (called before the row takes the new status)."""

    def account(self, session: AsyncSession, account: AccountRow, status: str, now: datetime) -> None:
        """``account`` moved to ``status`` (``promised``, ``paid``)."""

    async def held(self, session: AsyncSession, request: ContactRequestRow, channel: str,
                   now: datetime) -> Hold | None:
        """A hold when the dispatch of ``request`` on ``channel`` must wait (the runtime defers it)."""
        return None

    async def before_commit(self, session: AsyncSession) -> None:
        """Last step of every runtime transaction."""


NO_HOOKS = RuntimeHooks()
