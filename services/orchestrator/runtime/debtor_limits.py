"""A debtor's own limits in the runtime: the inconvenient times stored on the debtor (from ops or
from replies that state them) and the attorney stored on an account, turned into policy inputs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from services.orchestrator.policy.models import InconvenientTime
from services.orchestrator.runtime.models import AccountRow, DebtorRow
from shared import stated_limits
from shared.events.contracts import DebtorUpdated

_FIELDS = ("days", "start", "end", "channels")


def inconvenient_of(debtor: DebtorRow) -> tuple[InconvenientTime, ...]:
    """The stored limits as the policy takes them; a place (``not at work``) is kept but not a time."""
    found = []
    for item in debtor.inconvenient_times or ():
        if item.get("place") and not item.get("start") and not item.get("end") and not item.get("days"):
            continue  # where, not when: Cadencia does not know which address is a workplace
        found.append(InconvenientTime(
            tuple(item.get("days") or ()), item.get("start"), item.get("end"), tuple(item.get("channels") or ()),
            str(item.get("source") or "ops"),
        ))
    return tuple(found)


def _key(item: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(tuple(v) if isinstance(v, list) else v for v in (item.get(f) for f in (*_FIELDS, "place")))


def replace_from(debtor: DebtorRow, source: str, items: Iterable[Mapping[str, Any]], now: datetime) -> None:
    """Replace the limits ``source`` stated with ``items`` (ops' PUT replaces ops' own, keeps the debtor's)."""
    kept = [i for i in debtor.inconvenient_times or () if i.get("source") != source]
    debtor.inconvenient_times = kept + [{**dict(i), "source": source, "at": now.isoformat()} for i in items]


def record_reply(debtor: DebtorRow, text: str | None, now: datetime) -> list[dict[str, Any]]:
    """Add the limits a reply states (``"no me llamen antes de las 10"``); returns the new ones."""
    known = {_key(i) for i in debtor.inconvenient_times or ()}
    new = [dict(i) for i in stated_limits.from_text(text) if _key(i) not in known]
    if new:
        debtor.inconvenient_times = [
            *(debtor.inconvenient_times or ()), *({**i, "source": "reply", "at": now.isoformat()} for i in new)
        ]
    return new


def apply_attorney(account: AccountRow, update: DebtorUpdated, now: datetime) -> None:
    """An account event says the debtor is, or no longer is, represented by an attorney for the debt."""
    if update.represented_by_attorney is None:
        return
    if not update.represented_by_attorney:
        account.attorney = None
        return
    details = update.attorney.model_dump(mode="json") if update.attorney is not None else {}
    account.attorney = {**details, "since": now.isoformat()}
