"""Pre-aggregated counters, written in the transaction of the events they count.

The runtime reports each status change and account change of a transaction (:class:`CountingHooks`
gathers them in memory on the session); at the end of the transaction they are summed per
``(grain, bucket, metric, dim, key)`` and upserted in one statement, in key order so two
transactions never take counter row locks in opposite orders. The dashboard then reads a few
hundred counter rows instead of scanning the ledger.
"""

from __future__ import annotations

import functools
import random
from collections import Counter as Tally
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Table, delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator.ops.models import CounterRow, RequestTagRow
from services.orchestrator.runtime.models import AccountRow, ContactRequestRow, DispatchRow
from services.orchestrator.runtime.state import known_dispatch
from services.orchestrator.templates.models import TemplateVersion

FACTS = "cadencia.ops.facts"
#: Concurrent PostgreSQL transactions spread their increments over this many rows per counter.
PG_SHARDS = 8
#: Minute buckets older than this are pruned (the dashboard shows the last hour by minute).
MINUTES_KEPT = timedelta(hours=3)
NONE = "(none)"
#: Status changes counted per channel over time (``requested`` is a request's first status).
SERIES = ("requested", "dispatched", "delivered", "failed", "responded", "opted_out", "deferred", "rejected",
          "expired", "exhausted", "promised", "paid")
BREAKDOWN_DIMS = ("campaign", "jurisdiction", "segment")
OPT_OUT_KINDS = frozenset({"opt_out", "unsubscribe"})


@dataclass(frozen=True)
class StatusFact:
    request: ContactRequestRow
    status: str
    first: bool
    now: datetime
    channel: str | None
    reason: str | None
    rules: tuple[str, ...]
    dispatch_id: str | None


@dataclass(frozen=True)
class AccountFact:
    account_id: str
    status: str
    now: datetime


@dataclass(frozen=True)
class AgentFact:
    """A voice call a person answered, or how a call bridged to agents ended (with its talk time)."""

    campaign: str | None
    status: str
    talk_time_s: int | None
    at: datetime


#: Voice outcomes counted per campaign (hour buckets, dim ``campaign``) for the agents' figures over 30
#: days: the abandoned-call rate is abandoned / answered. ``talk_time_s`` adds seconds, not events.
AGENT_METRICS = {"conversation": "answered", "agent_connected": "agent_connected", "abandoned": "abandoned"}
TALK_TIME = "talk_time_s"


def minute(at: datetime) -> datetime:
    return at.replace(second=0, microsecond=0)


def hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def _facts(session: AsyncSession) -> list[StatusFact | AccountFact | AgentFact]:
    facts: list[StatusFact | AccountFact | AgentFact] = session.info.setdefault(FACTS, [])
    return facts


def note_status(session: AsyncSession, request: ContactRequestRow, status: str, now: datetime, *,
                channel: str | None, reason: str | None, rules: Sequence[str], dispatch_id: str | None) -> None:
    # A request row starts as "accepted" and takes its first decided status here.
    first = request.status == "accepted"
    _facts(session).append(StatusFact(request, status, first, now, channel, reason, tuple(rules), dispatch_id))


def note_account(session: AsyncSession, account: AccountRow, status: str, now: datetime) -> None:
    _facts(session).append(AccountFact(account.id, status, now))


def note_agent(session: AsyncSession, campaign: str | None, status: str, talk_time_s: int | None,
               at: datetime) -> None:
    """A voice outcome of ``AGENT_METRICS`` (counted in the hour it occurred)."""
    at = at.astimezone(UTC) if at.tzinfo is not None else at.replace(tzinfo=UTC)
    _facts(session).append(AgentFact(campaign, status, talk_time_s, at))


class _Tally:
    def __init__(self) -> None:
        self.counts: Tally[tuple[str, datetime, str, str, str]] = Tally()
        # The buckets of the last instant added: a status fact adds six or more counts at its one
        # instant, and a batch's facts mostly share theirs.
        self._at: datetime | None = None
        self._hour = self._minute = datetime.min

    def add(self, at: datetime, metric: str, dim: str, key: str | None, *, minutes: bool = False, n: int = 1) -> None:
        key = (key or NONE)[:200]
        if at is not self._at:
            self._at, self._hour, self._minute = at, hour(at), minute(at)
        self.counts[("h", self._hour, metric, dim, key)] += n
        if minutes:
            self.counts[("m", self._minute, metric, dim, key)] += n


def _request_tags(request: ContactRequestRow) -> dict[str, str | None]:
    payload: dict[str, Any] = request.payload or {}
    debtor = payload.get("debtor") or {}
    return {"campaign": payload.get("campaign_id"), "jurisdiction": debtor.get("jurisdiction"),
            "segment": request.segment}


#: ``(key, version) -> variant``: a version pins one content for good, so this never goes stale.
VariantCache = dict[tuple[str, int], str]


async def _variant(session: AsyncSession, dispatch_id: str | None,
                   variants: VariantCache) -> tuple[str | None, str | None]:
    """The dispatch's channel and ``key variant`` (no query for the dispatches the transaction's batch knows)."""
    if dispatch_id is None:
        return None, None
    dispatch = known_dispatch(session, dispatch_id) or await session.get(DispatchRow, dispatch_id)
    if dispatch is None:
        return None, None
    pinned = (dispatch.template_key, dispatch.template_version)
    variant = variants.get(pinned)
    if variant is None:
        version = await session.get(TemplateVersion, pinned)
        variant = version.variant if version else "?"
        if version is not None and len(variants) < 10_000:
            variants[pinned] = variant
    return dispatch.channel, f"{dispatch.template_key} {variant}"


async def _count_status(session: AsyncSession, fact: StatusFact, tally: _Tally, variants: VariantCache) -> None:
    tags = _request_tags(fact.request)
    # A dispatch that failed is "failed"; a request with no channel left after it is "exhausted".
    status = "exhausted" if fact.status == "failed" and fact.dispatch_id is None else fact.status
    metrics = [status]
    if fact.first:
        metrics.insert(0, "requested")
        if tags["campaign"]:
            session.add(RequestTagRow(request_id=fact.request.id, campaign_id=tags["campaign"],
                                      created_at=fact.request.created_at))
    if fact.status == "responded" and fact.reason in OPT_OUT_KINDS:
        metrics.append("opted_out")
    channel, variant = await _variant(session, fact.dispatch_id, variants)
    for metric in metrics:
        # a request's own channel until it is decided ("auto" when the strategy picks)
        on = fact.channel or channel or (fact.request.channels[0] if len(fact.request.channels) == 1 else "auto")
        tally.add(fact.now, metric, "channel", on, minutes=True)
        for dim in BREAKDOWN_DIMS:
            tally.add(fact.now, metric, dim, tags[dim])
        if variant is not None and metric != "requested":
            tally.add(fact.now, metric, "variant", variant)
    if fact.status in ("deferred", "rejected", "expired"):
        for rule in fact.rules or (NONE,):
            tally.add(fact.now, fact.status, "rule", rule)
    elif status == "failed":
        tally.add(fact.now, "failed", "reason", (fact.reason or NONE).split(" ")[0])
    elif fact.status == "responded":
        tally.add(fact.now, "responded", "kind", fact.reason)


async def flush(session: AsyncSession, postgres: bool, variants: VariantCache | None = None) -> None:
    """Upsert the transaction's counts; called last in the transaction."""
    variants = {} if variants is None else variants
    facts = session.info.pop(FACTS, None)
    if not facts:
        return
    tally = _Tally()
    for fact in facts:
        if isinstance(fact, StatusFact):
            await _count_status(session, fact, tally, variants)
        elif isinstance(fact, AgentFact):
            tally.add(fact.at, AGENT_METRICS[fact.status], "campaign", fact.campaign)
            if fact.talk_time_s:
                tally.add(fact.at, TALK_TIME, "campaign", fact.campaign, n=fact.talk_time_s)
        else:
            tally.add(fact.now, fact.status, "channel", "account", minutes=True)
    shard = random.randrange(PG_SHARDS) if postgres else 0
    rows = [
        {"grain": g, "bucket": b, "metric": m, "dim": d, "key": k, "shard": shard, "value": n}
        for (g, b, m, d, k), n in sorted(tally.counts.items())
    ]
    # executemany, in key order: compiled once and cached, where a multi-row VALUES was compiled per batch
    await session.execute(_upsert(postgres), rows)


@functools.cache
def _upsert(postgres: bool) -> Any:
    """Add to the counters: built once (every batch upserts; building it cost more than running it)."""
    insert = pg_insert if postgres else sqlite_insert
    table = CounterRow.__table__
    assert isinstance(table, Table)
    stmt = insert(table)
    return stmt.on_conflict_do_update(
        index_elements=["grain", "bucket", "metric", "dim", "key", "shard"],
        set_={"value": table.c.value + stmt.excluded.value},
    )


async def prune(session: AsyncSession, now: datetime) -> None:
    await session.execute(delete(CounterRow).where(CounterRow.grain == "m", CounterRow.bucket < now - MINUTES_KEPT))
