"""Entry points: a consumer batch (or one record, or an HTTP call's requests) is one unit of work.

Events are routed by type through :data:`ROUTES` (each names its topic, its inbox and its function
in :mod:`.events`). :func:`apply_batch` is the one path: mark the inbox for every event at once,
lock and load every debtor the fresh events touch, apply the events in order to that state, write
it back in bulk, commit once. The per-record handler is the same path with a batch of one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.orchestrator.runtime import events, templates_port
from services.orchestrator.runtime.state import ACTIVE, Batch
from services.orchestrator.runtime.statuses import ACCOUNTS, INTAKE, OUTCOMES
from services.orchestrator.runtime.unit import IntakeResult, Runtime
from shared.bus import PermanentError, RecordMeta, event_scope
from shared.db import first_times
from shared.events import AnyEvent, CloudEvent, Topics
from shared.events.contracts import (
    CallRecordedEvent,
    ContactRequestedEvent,
    DeliveryUpdatedEvent,
    ResponseReceivedEvent,
)


@dataclass
class Needs:
    """What the fresh events of a batch will read: loaded with one query per table before applying."""

    debtors: set[str] = field(default_factory=set)
    accounts: set[str] = field(default_factory=set)
    addresses: set[str] = field(default_factory=set)
    dispatches: set[str] = field(default_factory=set)
    requests: set[str] = field(default_factory=set)
    #: Requests whose every attempt is read (an outcome asks whether its dispatch is the latest).
    attempts: set[str] = field(default_factory=set)


async def _request_needs(b: Batch, event: ContactRequestedEvent, needs: Needs) -> None:
    checked = b.checked[event.id] = await events.check(b, event)
    if not checked.reasons:  # a rejected request touches no debtor
        debtor = checked.request.debtor
        needs.debtors.add(debtor.id)
        needs.accounts.add(checked.request.account.id)
        needs.addresses.update(a for a in (debtor.phone, debtor.email, debtor.whatsapp) if a)


async def _account_needs(b: Batch, event: Any, needs: Needs) -> None:
    needs.debtors.add(event.data.debtor_id)
    needs.accounts.add(event.data.account_id)


async def _delivery_needs(b: Batch, event: DeliveryUpdatedEvent, needs: Needs) -> None:
    needs.debtors.add(event.data.debtor_id)
    needs.dispatches.add(event.data.dispatch_id)
    needs.requests.add(event.data.request_id)
    needs.attempts.add(event.data.request_id)


async def _response_needs(b: Batch, event: ResponseReceivedEvent, needs: Needs) -> None:
    needs.debtors.add(event.data.debtor_id)
    if event.data.dispatch_id:
        needs.dispatches.add(event.data.dispatch_id)


async def _debtor_needs(b: Batch, event: Any, needs: Needs) -> None:
    needs.debtors.add(event.data.debtor_id)


def _only_fresh(apply: Callable[[Batch, Any, datetime], Awaitable[None]]
                ) -> Callable[[Batch, Any, datetime, bool], Awaitable[None]]:
    async def applied(b: Batch, event: Any, now: datetime, fresh: bool) -> None:
        if fresh:  # a redelivered event changes nothing
            await apply(b, event, now)
    return applied


async def _intake(b: Batch, event: ContactRequestedEvent, now: datetime, fresh: bool) -> IntakeResult:
    return await events.intake(b, event, now, fresh=fresh)


@dataclass(frozen=True)
class Route:
    topic: Callable[[Topics], str]
    #: The inbox consumer that deduplicates this type's event ids.
    consumer: str
    needs: Callable[[Batch, Any, Needs], Awaitable[None]]
    apply: Callable[[Batch, Any, datetime, bool], Awaitable[Any]]


def _routes() -> dict[type[CloudEvent], Route]:
    from services.orchestrator.recordings.service import RECORDINGS

    account = Route(lambda t: t.account_events, ACCOUNTS, _account_needs, _only_fresh(events.apply_account_event))
    routes: dict[type[CloudEvent], Route] = {
        ContactRequestedEvent: Route(lambda t: t.contact_requests, INTAKE, _request_needs, _intake),
        DeliveryUpdatedEvent: Route(lambda t: t.contact_outcomes, OUTCOMES, _delivery_needs,
                                    _only_fresh(events.apply_delivery)),
        ResponseReceivedEvent: Route(lambda t: t.contact_outcomes, OUTCOMES, _response_needs,
                                     _only_fresh(events.apply_response)),
        CallRecordedEvent: Route(lambda t: t.contact_outcomes, RECORDINGS, _debtor_needs,
                                 _only_fresh(events.apply_recording)),
    }
    routes.update(dict.fromkeys(events.ACCOUNT_HANDLERS, account))
    return routes


ROUTES = _routes()
REQUEST_TYPES = {ContactRequestedEvent.model_fields["type"].default}
ACCOUNT_TYPES = {cls.model_fields["type"].default for cls in events.ACCOUNT_HANDLERS}
OUTCOME_TYPES = {DeliveryUpdatedEvent.model_fields["type"].default, ResponseReceivedEvent.model_fields["type"].default,
                 CallRecordedEvent.model_fields["type"].default}


def route_of(rt: Runtime, event: CloudEvent, meta: RecordMeta | None) -> Route:
    route = ROUTES.get(type(event))
    if route is None or (meta is not None and route.topic(rt.ctx.topics) != meta.topic):
        raise PermanentError(f"{event.type} does not belong on {meta.topic if meta else 'this path'}")
    return route


@contextlib.contextmanager
def _no_scope() -> Iterator[None]:
    yield


def _template_keys(rt: Runtime, routed: Sequence[tuple[CloudEvent, Route]]) -> set[str]:
    """The template keys the batch's contact requests may pin: each one's key and its segment's variant."""
    keys: set[str] = set()
    for event, _ in routed:
        if isinstance(event, ContactRequestedEvent):
            keys.add(event.data.template)
            if suffix := rt.strategy.plan(event.data.account).template_suffix:
                keys.add(event.data.template + suffix)
    return keys


async def apply_batch(rt: Runtime, items: Sequence[tuple[CloudEvent, RecordMeta | None]], *,
                      scoped: bool = True) -> list[Any]:
    """Apply ``items`` in order as one transaction; what each event's function answered, in order.

    ``scoped``: each event's log and trace context is entered while it is applied (a consumer batch);
    off where the caller already did (one record) or where the events have none (an HTTP call).
    """
    routed = [(event, route_of(rt, event, meta)) for event, meta in items]

    def scope(event: CloudEvent) -> contextlib.AbstractContextManager[None]:
        return event_scope(event) if scoped else _no_scope()

    async with rt.unit_of_work() as session:
        b = Batch(rt, session, rt.ctx.clock())
        session.info[ACTIVE] = b
        try:
            fresh_marks = await first_times(session, [(route.consumer, event.id) for event, route in routed])
            await templates_port.preload(session, _template_keys(rt, routed))
            fresh: list[bool] = []
            needs = Needs()
            for event, route in routed:
                mark = (route.consumer, event.id)
                fresh.append(mark in fresh_marks)
                fresh_marks.discard(mark)  # a repeat within the batch is a duplicate too
                if fresh[-1]:  # (reads and checks only: no log or trace context to enter)
                    await route.needs(b, event, needs)
                elif route.consumer == INTAKE:
                    needs.requests.add(event.id)  # answered with the original result
            await b.load(needs.debtors, accounts=needs.accounts, addresses=needs.addresses,
                         dispatches=needs.dispatches, requests=needs.requests, attempts=needs.attempts)
            results = []
            for (event, route), is_fresh in zip(routed, fresh, strict=True):
                with scope(event):
                    results.append(await route.apply(b, event, rt.ctx.clock(), is_fresh))
            await b.flush()
        finally:
            session.info.pop(ACTIVE, None)
    return results


async def apply_request(rt: Runtime, event: ContactRequestedEvent) -> IntakeResult:
    """The one path of a contact request, whether it came from Kafka or ``POST /v1/contact-requests``."""
    return (await apply_requests(rt, [event]))[0]


async def apply_requests(rt: Runtime, requests: Sequence[ContactRequestedEvent]) -> list[IntakeResult]:
    """Several requests (one HTTP call) as one unit of work, each decided like one read from Kafka."""
    results: list[IntakeResult] = await apply_batch(rt, [(e, None) for e in requests], scoped=False)
    return results


class EventHandlers:
    """The per-record handler: one record, one unit of work (the runner's fallback for a failed batch)."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def __call__(self, event: AnyEvent, meta: RecordMeta) -> None:
        await apply_batch(self.rt, [(event, meta)], scoped=False)  # the runner entered its scope


class BatchHandler:
    """The batch handler: every admitted record of a consumer fetch, one unit of work."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def __call__(self, items: Sequence[tuple[AnyEvent, RecordMeta]]) -> None:
        await apply_batch(self.rt, items)
