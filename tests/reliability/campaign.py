"""A campaign of lawful contact requests over SMS, email and voice, and the audit of how it ended.

The requests dispatch at once: MX debtors (contact 07:00-22:00 every day) in a zone where it is about
13:00 now (the bench's choice, ``bench/pipeline.py``), one debtor per request so no cap binds, on
addresses no sandbox rule scripts (SMS and email delivered, calls answered by a person).

:func:`audit` reads what every party recorded — the orchestrator's ledger, the channels' send logs,
the status and outcome topics, the sandbox's request log — and lists every broken promise.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from shared.bus import EventProducer
from shared.config import KafkaSettings
from shared.events import Topics
from shared.events.contracts import Account, ContactRequested, ContactRequestedEvent, Debtor, StatusChanged
from tests.reliability.cluster import Cluster

#: Where a contact request ends (``deferred`` only with a ``not_before``).
TERMINAL = frozenset({"delivered", "failed", "rejected", "expired", "unknown"})
#: Out of every 20 requests: 12 SMS, 5 emails, 3 calls.
CHANNELS = ("sms",) * 12 + ("email",) * 5 + ("voice",) * 3
#: What a provider request creates, by path suffix; the rest (status look-ups) creates nothing.
CREATES = ("/Messages.json", "/Calls.json", "/v3/mail/send")


def lawful_zone(now: datetime) -> str:
    """An IANA zone where it is about 13:00 now: MX's hours then hold for about nine hours."""
    offset = (13 - now.hour) % 24
    if offset > 14:
        offset -= 24
    return "Etc/GMT" if offset == 0 else f"Etc/GMT{-offset:+d}"


def contact_requests(run: str, count: int) -> list[ContactRequestedEvent]:
    now = datetime.now(UTC)
    zone, today = lawful_zone(now), now.date()
    events = []
    for i in range(count):
        debtor_id = f"crash-{run}-{i}"
        debtor = Debtor(id=debtor_id, name="Ana Prueba", locale="es-MX", jurisdiction="MX", time_zone=zone,
                        # a Russian mobile range spans many zones, so the debtor's own zone decides
                        phone=f"+7912{(i * 10 + 9) % 10_000_000:07d}", email=f"{debtor_id}@example.com")
        account = Account(id=f"acct-{run}-{i}", product="personal_loan", balance="1234.50", currency="MXN",
                          days_past_due=12, due_date=today - timedelta(days=12),
                          payment_url="https://pay.example.com/crash")
        request = ContactRequested(debtor=debtor, account=account, channel=CHANNELS[i % len(CHANNELS)],
                                   template="reminder_early", campaign_id=f"crash-{run}")
        events.append(ContactRequestedEvent(subject=debtor_id, source="cadencia/tests", data=request))
    return events


async def publish(kafka: KafkaSettings, events: list[ContactRequestedEvent], seconds: float = 0) -> None:
    """Publish the requests, spread evenly over ``seconds`` (a campaign trickling in, so that there is
    always work in flight), in chunks of a tenth of a second's worth."""
    producer = EventProducer(kafka, client_id="crash-campaign")
    await producer.start()
    try:
        topic = Topics(kafka.topic_prefix).contact_requests
        chunk = max(1, min(500, round(len(events) / seconds / 10))) if seconds else 500
        start = time.monotonic()
        for n in range(0, len(events), chunk):
            delay = start + seconds * n / len(events) - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # the publishing schedule, not a wait for a result
            await producer.publish_many([(topic, e) for e in events[n:n + chunk]])
    finally:
        await producer.stop()


def settled(status: str, not_before: Any) -> bool:
    return status in TERMINAL or (status == "deferred" and not_before is not None)


def last_statuses(events: list[Any]) -> dict[str, StatusChanged]:
    """The last status of each request on the status topic (one debtor's events share a partition)."""
    last: dict[str, StatusChanged] = {}
    for event in events:
        if event.type == "cadencia.contact.status_changed.v1":
            last[event.data.request_id] = event.data
    return last


async def ledger_statuses(cluster: Cluster) -> dict[str, tuple[str, Any]]:
    """Each request's status in the orchestrator's ledger, with the ``not_before`` of its last history row."""
    rows = await cluster.query("orchestrator", "SELECT id, status FROM contact_requests")
    history = await cluster.query(
        "orchestrator", "SELECT request_id, not_before FROM contact_status_history ORDER BY id")
    not_before = dict(history)
    return {rid: (status, not_before.get(rid)) for rid, status in rows}


def dispatch_of(record: dict[str, Any]) -> str | None:
    """The dispatch a recorded provider request was made for: the ``dispatch`` parameter of a Twilio
    ``StatusCallback``, or the ``dispatch_id`` custom arg of a SendGrid mail."""
    if record.get("form"):
        value = record["form"].get("StatusCallback", "")
        url = value[0] if isinstance(value, list) else value
        found = parse_qs(urlsplit(url).query).get("dispatch")
        return found[0] if found else None
    body = record.get("json") or {}
    args = dict(body.get("custom_args") or {})
    for personalization in body.get("personalizations") or []:
        args.update(personalization.get("custom_args") or {})
    return args.get("dispatch_id")


@dataclass
class Audit:
    """What the parties recorded, and what they should agree on."""

    requests: int
    ledger: dict[str, tuple[str, Any]]
    topic: dict[str, StatusChanged]
    #: Ledger dispatches: id → (request id, channel, status).
    dispatches: dict[str, tuple[str, str, str]]
    #: Provider requests that create a message, call or mail, by dispatch id.
    provider_requests: dict[str, int]
    #: Dispatches the outcome topic reported ``unknown`` at least once.
    unknown_outcomes: set[str]
    #: Dispatches a channel's send log holds without the provider's id (the answer never recorded).
    unanswered: set[str]
    problems: list[str] = field(default_factory=list)

    def by_status(self) -> Counter[str]:
        return Counter(status for status, _ in self.ledger.values())

    def figures(self) -> dict[str, Any]:
        return {"requests": self.requests, "ledger": dict(sorted(self.by_status().items())),
                "dispatches": len(self.dispatches),
                "dispatches_by_channel": dict(Counter(c for _, c, _ in self.dispatches.values())),
                "provider_requests": sum(self.provider_requests.values()),
                "duplicates": sum(n - 1 for n in self.provider_requests.values() if n > 1),
                "unknown_outcomes": len(self.unknown_outcomes), "answer_lost": len(self.unanswered)}


async def audit(cluster: Cluster, request_ids: set[str], status_events: list[Any] | None,
                outcome_events: list[Any]) -> Audit:
    """Everything recorded about ``request_ids``; ``status_events`` None: the status topic is not
    compared (a broker restarted empty lost its history)."""
    ledger = {rid: v for rid, v in (await ledger_statuses(cluster)).items() if rid in request_ids}
    rows = await cluster.query("orchestrator", "SELECT id, request_id, channel, status FROM dispatches")
    dispatches = {d: (r, c, s) for d, r, c, s in rows if r in request_ids}
    created: Counter[str] = Counter()
    for record in await cluster.sandbox_requests():
        if record["method"] == "POST" and record["path"].endswith(CREATES) and 200 <= record["status"] < 300:
            dispatch = dispatch_of(record)
            if dispatch is not None:
                created[dispatch] += 1
    unknown = {e.data.dispatch_id for e in outcome_events
               if e.type == "cadencia.contact.delivery_updated.v1" and e.data.status == "unknown"}
    unanswered: set[str] = set()
    for channel in ("sms", "email", "voice"):
        for dispatch_id, provider_id in await cluster.query(channel, "SELECT dispatch_id, provider_id FROM send_log"):
            if provider_id is None and dispatch_id in created:
                unanswered.add(dispatch_id)
    topic = {k: v for k, v in last_statuses(status_events or []).items() if k in request_ids}
    result = Audit(len(request_ids), ledger, topic, dispatches, dict(created), unknown, unanswered)
    result.problems = _problems(result, request_ids, topic=status_events is not None)
    return result


def _problems(a: Audit, request_ids: set[str], topic: bool = True) -> list[str]:
    problems: list[str] = []

    def note(what: str, items: list[Any]) -> None:
        if items:
            problems.append(f"{what}: {len(items)}, e.g. {sorted(map(str, items))[:3]}")

    note("requests missing from the ledger", list(request_ids - a.ledger.keys()))
    note("requests not terminal in the ledger", [r for r, (s, nb) in a.ledger.items() if not settled(s, nb)])
    if topic:
        note("requests without a status on the topic", list(request_ids - a.topic.keys()))
    note("requests whose last status on the topic is not terminal",
         [r for r, s in a.topic.items() if not settled(s.status, s.not_before)])
    note("ledger and status topic disagree",
         [(r, s, a.topic[r].status) for r, (s, _) in a.ledger.items() if r in a.topic and a.topic[r].status != s])
    note("second provider request for a dispatch", [d for d, n in a.provider_requests.items() if n > 1])
    note("provider requests for no dispatch of the ledger", [d for d in a.provider_requests if d not in a.dispatches])
    note("ambiguous sends (answer lost) never reported unknown", list(a.unanswered - a.unknown_outcomes))
    per_request: defaultdict[str, list[str]] = defaultdict(list)
    for dispatch_id, (request_id, _, status) in a.dispatches.items():
        per_request[request_id].append(dispatch_id)
        reached = dispatch_id in a.provider_requests
        if not reached and status not in ("expired", "unknown", "failed"):
            problems.append(f"dispatch {dispatch_id} is {status} but the provider never saw it")
        if reached and status in ("expired", "dispatched"):
            problems.append(f"dispatch {dispatch_id} reached the provider yet is {status}")
    note("delivered requests the provider never saw",
         [r for r, (s, _) in a.ledger.items()
          if s == "delivered" and not any(d in a.provider_requests for d in per_request[r])])
    return problems
