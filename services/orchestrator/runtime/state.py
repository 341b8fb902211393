"""What one unit of work reads and writes: the state of every debtor a batch touches (docs/internals.md: batches).

``Batch.load`` locks the debtors (sorted, ``FOR UPDATE`` on PostgreSQL) and reads their accounts,
suppressions, pending deferrals and ledger window with one query per table. Events are then applied
in order to these rows in memory, so a later event sees what an earlier one did (a dispatch decided
earlier in the batch counts toward the caps of the next). New rows are collected and changed rows
remembered; ``flush`` writes them with Core bulk statements, last in the transaction.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from services.orchestrator.policy.models import normalise_address
from services.orchestrator.runtime import policy_port, repository
from services.orchestrator.runtime.models import (
    AccountRow,
    ContactRequestRow,
    DebtorRow,
    DeferredContactRow,
    DispatchRow,
    OutcomeRow,
    ResponseRow,
    StatusHistoryRow,
    SuppressionRow,
)
from services.orchestrator.runtime.records import (
    AccountRecord,
    DebtorRecord,
    DeferralRecord,
    DispatchRecord,
    RequestRecord,
    SuppressionRecord,
)
from services.orchestrator.runtime.repository import table_of
from services.orchestrator.runtime.unit import Runtime
from shared.db import OutboxRecord, outbox_values
from shared.events import CloudEvent

#: ``session.info`` keys: the batch a session is applying, and the dispatches it knows (for hooks).
ACTIVE = "cadencia.runtime.batch"
DISPATCHES = "cadencia.runtime.dispatches"

_REQUEST_COLUMNS = ("channels", "tried_channels", "attempts", "segment", "intake_status", "intake_reason",
                    "status", "reason", "updated_at")
_UPDATED: dict[type[Any], tuple[str, ...]] = {
    DebtorRecord: tuple(c.key for c in table_of(DebtorRow).columns if c.key != "id"),
    AccountRecord: tuple(c.key for c in table_of(AccountRow).columns if c.key != "id"),
    RequestRecord: _REQUEST_COLUMNS,
    DispatchRecord: ("status", "error_code", "updated_at"),
    DeferralRecord: ("state", "released_at"),
    SuppressionRecord: ("lifted_at",),
}
#: Order of the bulk writes: changed rows first (a cancelled deferral before the pending one that
#: replaces it, under the one-pending-per-request index), then new rows.
_NEW_ORDER: tuple[type[Any], ...] = (AccountRecord, RequestRecord, DeferralRecord, DispatchRecord, SuppressionRecord)


@dataclass(frozen=True)
class Reply:
    channel: str
    occurred_at: datetime
    address: str | None
    at: datetime


def lookback(rt: Runtime, jurisdiction: str | None) -> timedelta:
    """How far back a decision for this jurisdiction reads the ledger."""
    pack = rt.policy.pack(jurisdiction or "default")
    return max(rt.strategy.ledger_window, timedelta(days=pack.lookback_days + 1))


def _widest_lookback(rt: Runtime) -> timedelta:
    codes = [*getattr(rt.policy, "specs", {}), "default"]
    return max(lookback(rt, str(code)) for code in codes)


class Batch:
    def __init__(self, rt: Runtime, session: AsyncSession, now: datetime) -> None:
        self.rt, self.session, self.now = rt, session, now
        self.since = now - _widest_lookback(rt)
        self.debtors: dict[str, DebtorRow] = {}
        self.accounts: dict[str, AccountRow] = {}
        self.requests: dict[str, ContactRequestRow] = {}
        self.dispatches: dict[str, DispatchRow] = {}
        self._ledger: dict[str, dict[str, DispatchRow]] = defaultdict(dict)
        self._by_request: dict[str, dict[str, DispatchRow]] = defaultdict(dict)
        self._replies: dict[str, list[Reply]] = defaultdict(list)
        self._suppressions: dict[int, SuppressionRow] = {}
        self._new_suppressions: list[SuppressionRow] = []
        self._addresses: set[str] = set()
        self._deferrals: dict[str, list[DeferredContactRow]] = defaultdict(list)
        self._attempts_known: set[str] = set()
        self._missing_requests: set[str] = set()
        self._new: dict[type[Any], list[Any]] = {cls: [] for cls in _NEW_ORDER}
        self._new_ids: set[int] = set()
        self._dirty: dict[type[Any], dict[Any, Any]] = {cls: {} for cls in _UPDATED}
        self.history: list[dict[str, Any]] = []
        self.outbox: list[dict[str, Any]] = []
        self.outcomes: list[dict[str, Any]] = []
        self.responses: list[dict[str, Any]] = []
        self.links: list[dict[str, Any]] = []
        #: Requests checked before the debtors were locked (intake's validation), by event id.
        self.checked: dict[str, Any] = {}

    @classmethod
    def active(cls, session: AsyncSession) -> Batch | None:
        found = session.info.get(ACTIVE)
        return found if isinstance(found, Batch) else None

    # --- loading ----------------------------------------------------------------------------------

    async def load(self, debtor_ids: Iterable[str], *, accounts: Iterable[str] = (), addresses: Iterable[str] = (),
                   dispatches: Iterable[str] = (), requests: Iterable[str] = (), attempts: Iterable[str] = ()) -> None:
        """Lock and read every debtor not loaded yet, one statement per table for all of them; and the
        dispatches, requests and every attempt of the requests (``attempts``) the events name."""
        s, postgres = self.session, self.rt.postgres
        ids = sorted(set(debtor_ids) - set(self.debtors))
        if ids:
            for debtor in await repository.lock_debtors(s, ids, postgres):
                self.debtors[debtor.id] = debtor
        wanted_accounts = set(accounts) - set(self.accounts)
        if ids or wanted_accounts:
            for account in await repository.accounts(s, ids, wanted_accounts):
                self.accounts.setdefault(account.id, account)
        if ids:
            for deferral in await repository.pending_deferrals(s, ids):
                self._deferrals[deferral.debtor_id].append(deferral)
            for dispatch in await repository.dispatches_since(s, ids, self.since):
                self._know(dispatch)
            for debtor_id, channel, occurred_at, address, at in await repository.replies_since(s, ids, self.since):
                self._replies[debtor_id].append(Reply(channel, occurred_at, address, at))
            wanted = {a for d in ids for a in self._addresses_of(self.debtors[d])} | set(addresses)
            await self._load_suppressions(ids, wanted)
        wanted_dispatches = set(dispatches) - set(self.dispatches)
        wanted_attempts = set(attempts) - self._attempts_known
        if wanted_dispatches or wanted_attempts:
            for dispatch in await repository.dispatches(s, wanted_dispatches, wanted_attempts):
                self._know(dispatch)
            self._attempts_known |= wanted_attempts
        await self.load_requests(requests)

    async def _load_suppressions(self, debtor_ids: Collection[str], addresses: Collection[str]) -> None:
        new_addresses = set(addresses) - self._addresses
        if not debtor_ids and not new_addresses:
            return
        for row in await repository.suppressions(self.session, debtor_ids, new_addresses):
            self._suppressions.setdefault(row.id, row)
        self._addresses |= new_addresses

    async def load_requests(self, ids: Iterable[str]) -> None:
        wanted = set(ids) - set(self.requests) - self._missing_requests
        if wanted:
            for row in await repository.requests(self.session, wanted):
                self.requests[row.id] = row
            self._missing_requests |= wanted - set(self.requests)

    def _know(self, dispatch: DispatchRow) -> DispatchRow:
        known = self.dispatches.setdefault(dispatch.id, dispatch)
        self._ledger[known.debtor_id][known.id] = known
        self._by_request[known.request_id][known.id] = known
        return known

    @staticmethod
    def _addresses_of(debtor: DebtorRow) -> list[str]:
        return [a for a in (debtor.phone, debtor.email, debtor.whatsapp) if a]

    # --- reading ----------------------------------------------------------------------------------

    async def debtor(self, debtor_id: str) -> DebtorRow:
        if debtor_id not in self.debtors:
            await self.load([debtor_id])
        return self.debtors[debtor_id]

    def account(self, debtor_id: str, account_id: str) -> AccountRow:
        """The account, created (active, blank) when it does not exist yet."""
        account = self.accounts.get(account_id)
        if account is None:
            account = AccountRecord(id=account_id, debtor_id=debtor_id, product="", balance=None, currency=None,
                                 days_past_due=None, due_date=None, risk_score=None, payment_url=None,
                                 status="active", promise_until=None, promise_date=None, status_changed_at=None,
                                 attorney=None)
            self.accounts[account_id] = account
            self.add(account)
        return account

    def accounts_of(self, debtor_id: str) -> list[AccountRow]:
        return sorted((a for a in self.accounts.values() if a.debtor_id == debtor_id), key=lambda a: a.id)

    async def request(self, request_id: str) -> ContactRequestRow | None:
        await self.load_requests([request_id])
        return self.requests.get(request_id)

    async def dispatch(self, dispatch_id: str) -> DispatchRow | None:
        if dispatch_id not in self.dispatches:
            await self.load([], dispatches=[dispatch_id])
        return self.dispatches.get(dispatch_id)

    async def attempts_of(self, request_id: str) -> list[DispatchRow]:
        """Every dispatch of a request, by attempt."""
        if request_id not in self._attempts_known:
            for dispatch in await repository.dispatches(self.session, request_ids=[request_id]):
                self._know(dispatch)
            self._attempts_known.add(request_id)
        return sorted(self._by_request[request_id].values(), key=lambda d: d.attempt)

    async def latest_on(self, debtor_id: str, channel: str) -> DispatchRow | None:
        """The debtor's latest dispatch on ``channel``, whenever it was."""
        stored = await repository.latest_dispatch_on(self.session, debtor_id, channel)
        found = [self._know(stored)] if stored is not None else []
        found += [d for d in self._ledger[debtor_id].values() if d.channel == channel]
        return max(found, key=lambda d: d.at, default=None)

    async def suppressions_of(self, debtor: DebtorRow) -> list[SuppressionRow]:
        """Active suppressions of the debtor and of the addresses it uses now."""
        addresses = self._addresses_of(debtor)
        if not self._addresses.issuperset(addresses):
            await self._load_suppressions((), addresses)
        return [s for s in (*self._suppressions.values(), *self._new_suppressions)
                if s.lifted_at is None and (s.debtor_id == debtor.id or (s.address is not None and s.address
                                                                         in addresses))]

    async def ledger(self, debtor: DebtorRow, now: datetime) -> list[policy_port.LedgerEntry]:
        since = now - lookback(self.rt, debtor.jurisdiction)
        if since < self.since:  # a pack reading further back than any loaded: read this debtor's own
            return await repository.load_ledger(self.session, debtor.id, since)
        dispatched = [d for d in self._ledger[debtor.id].values() if d.at >= since]
        return repository.ledger_entries(dispatched, [r for r in self._replies[debtor.id] if r.at >= since])

    def pending(self, debtor_id: str, account_id: str | None = None) -> list[DeferredContactRow]:
        return [d for d in self._deferrals[debtor_id]
                if d.state == "pending" and (account_id is None or d.account_id == account_id)]

    # --- changing ---------------------------------------------------------------------------------

    def add(self, obj: Any) -> None:
        """A new row: inserted by ``flush`` with the values it has then."""
        self._new[type(obj)].append(obj)
        self._new_ids.add(id(obj))
        if isinstance(obj, RequestRecord):
            self.requests[obj.id] = obj
        elif isinstance(obj, DispatchRecord):
            self._know(obj)
            self._attempts_known.add(obj.request_id)
        elif isinstance(obj, DeferralRecord):
            self._deferrals[obj.debtor_id].append(obj)
        elif isinstance(obj, SuppressionRecord):
            self._new_suppressions.append(obj)

    def touch(self, obj: Any) -> None:
        """A loaded row changed: written back by ``flush``."""
        if id(obj) not in self._new_ids:
            self._dirty[type(obj)][obj.id] = obj

    def cancel_pending(self, request_id: str, debtor_id: str, now: datetime) -> None:
        for deferral in self._deferrals[debtor_id]:
            if deferral.request_id == request_id and deferral.state == "pending":
                deferral.state, deferral.released_at = "cancelled", now
                self.touch(deferral)

    def add_deferral(self, request: ContactRequestRow, until: datetime, reason: str, rules: list[str],
                     now: datetime) -> None:
        """The request's one pending deferral (any earlier one of the request is cancelled)."""
        self.cancel_pending(request.id, request.debtor_id, now)
        self.add(DeferralRecord(
            id=None, request_id=request.id, debtor_id=request.debtor_id, account_id=request.account_id,
            not_before=until, state="pending", reason=reason, rules=rules, created_at=now, released_at=None,
        ))

    def find_suppression(self, debtor_id: str, channel: str, address: str | None, reason: str) -> SuppressionRow | None:
        for s in (*self._suppressions.values(), *self._new_suppressions):
            if (s.debtor_id, s.channel, s.address, s.reason) == (debtor_id, channel, address, reason) \
                    and s.lifted_at is None:
                return s
        return None

    async def lift_opt_outs(self, channel: str, address: str | None, now: datetime) -> None:
        """The address's owner opted back in: lift its opt-outs whichever debtor they were recorded for."""
        wanted = normalise_address(channel, address)
        for s in (*self._suppressions.values(), *self._new_suppressions):
            if s.channel == channel and s.address == wanted and s.reason == "opt_out" and s.lifted_at is None:
                s.lifted_at = now
                self.touch(s)
        table = table_of(SuppressionRow)  # and those of debtors this batch has not read
        await self.session.execute(update(table).where(
            table.c.channel == channel, table.c.address == wanted, table.c.reason == "opt_out",
            table.c.lifted_at.is_(None),
        ).values(lifted_at=now))

    def add_reply(self, response: dict[str, Any]) -> None:
        self.responses.append(response)
        self._replies[response["debtor_id"]].append(
            Reply(response["channel"], response["occurred_at"], response["address"], response["at"]))

    def stage(self, topic: str, event: CloudEvent) -> None:
        """An event for the outbox, stamped now with the current trace (the event being applied)."""
        self.outbox.append(outbox_values(topic, event))

    # --- writing ----------------------------------------------------------------------------------

    async def flush(self) -> None:
        """Write every change of the batch: bulk updates, then bulk inserts, in the caller's transaction."""
        s = self.session
        await s.flush()  # rows other code added through the ORM keep their order before ours
        for cls, columns in _UPDATED.items():
            await repository.update_rows(s, table_of(cls.model), self._dirty[cls].values(), columns)
        for cls in _NEW_ORDER:
            table = table_of(cls.model)
            await repository.insert_rows(s, table, [repository.values_of(o, table) for o in self._new[cls]])
        await repository.insert_rows(s, table_of(StatusHistoryRow), self.history)
        await repository.insert_rows(s, table_of(OutcomeRow), self.outcomes)
        await repository.insert_rows(s, table_of(ResponseRow), self.responses)
        await repository.insert_rows(s, table_of(OutboxRecord), self.outbox)
        await repository.remember_links(s, self.links, self.rt.postgres)
        s.info.setdefault(DISPATCHES, {}).update(self.dispatches)
        for changed in self._dirty.values():
            changed.clear()
        for new in self._new.values():
            new.clear()
        self._new_ids.clear()
        for written in (self.history, self.outcomes, self.responses, self.outbox, self.links):
            written.clear()


def known_dispatch(session: AsyncSession, dispatch_id: str) -> DispatchRow | None:
    """A dispatch this transaction's batches decided or read (hooks count them without a query)."""
    found: DispatchRow | None = session.info.get(DISPATCHES, {}).get(dispatch_id)
    return found
