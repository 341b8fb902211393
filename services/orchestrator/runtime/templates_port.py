"""The runtime's view of the template store: does a key exist, which version does a dispatch pin.

Kept to two calls so the runtime does not depend on how templates are stored.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from shared.events.contracts import TemplateRef


def _service() -> Any:
    try:
        from services.orchestrator.templates import service
    except ImportError:  # the template store is not installed: accept any key, pin version 1
        return None
    return service


async def key_exists(session: AsyncSession, key: str) -> bool:
    service = _service()
    if service is None:
        return True
    return bool(await service.key_exists(session, key))


async def resolve(
    session: AsyncSession, key: str, channel: str, locale: str, debtor_id: str, variant: str | None
) -> TemplateRef | None:
    """The published version a dispatch on ``channel`` pins, or None when there is none.

    ``variant`` (from the strategy) forces that A/B variant when it is published; otherwise the
    store splits debtors by its own weights.
    """
    service = _service()
    if service is None:
        return TemplateRef(key=key, version=1, channel=channel, locale=locale, variant=variant)
    weights = {variant: 1.0} if variant else None
    ref: TemplateRef | None = await service.resolve(session, key, channel, locale, debtor_id, weights=weights)
    return ref
