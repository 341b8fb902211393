"""The runtime's seam into self-service: the link every dispatch carries, and its lookup row."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator.runtime.strategy import SelfService
from services.orchestrator.selfservice import links
from services.orchestrator.selfservice.models import SelfServiceLinkRow
from services.orchestrator.settings import Settings


def secret_of(settings: Settings) -> bytes:
    return settings.self_service_secret.get_secret_value().encode()


def base_url(settings: Settings) -> str:
    return settings.self_service_url or settings.public_url


def url_for(settings: Settings, config: SelfService, debtor_id: str, account_id: str, now: datetime) -> str | None:
    """``account.self_service_url`` of a dispatch (``None`` when self-service is off)."""
    if not config.enabled:
        return None
    token = links.sign(secret_of(settings), debtor_id, account_id, links.expiry_for(now, config.link_ttl_days))
    return links.link_url(base_url(settings), token)


async def remember(session: AsyncSession, settings: Settings, postgres: bool, debtor_id: str, account_id: str,
                   now: datetime) -> None:
    """Make the account's ref resolvable by the page (idempotent, in the dispatch's transaction)."""
    insert = pg_insert if postgres else sqlite_insert
    await session.execute(insert(SelfServiceLinkRow).values(**link_row(settings, debtor_id, account_id, now))
                          .on_conflict_do_nothing(index_elements=["ref"]))


def link_row(settings: Settings, debtor_id: str, account_id: str, now: datetime) -> dict[str, Any]:
    """The row that makes the account's ref resolvable (a batch inserts them together)."""
    ref = links.account_ref(secret_of(settings), debtor_id, account_id)
    return {"ref": ref, "debtor_id": debtor_id, "account_id": account_id, "created_at": now}
