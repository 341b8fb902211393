"""Hypothesis strategies of hostile Kafka records, per consumed topic.

Every record is ``(kind, value bytes)``. The kinds: not JSON, invalid UTF-8, a field of the wrong type,
a 1 MB string, an unknown event type, template-injection strings in names and variables, unknown
jurisdictions and time zones, negative, zero or absurd amounts and currencies, instants with no UTC
equivalent (the last five on
contact requests, where they are data the orchestrator must judge, not malformed JSON).
"""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from shared.events.contracts import (
    Account,
    ContactDispatched,
    ContactDispatchedEvent,
    ContactRequested,
    ContactRequestedEvent,
    Debtor,
    DeliveryUpdated,
    DeliveryUpdatedEvent,
    PaymentReceived,
    PaymentReceivedEvent,
    TemplateContent,
    TemplatePublished,
    TemplatePublishedEvent,
    TemplateRef,
)

HUGE = 1_000_000  # characters: a record of about 1 MB, four times the consumers' event limit
INJECTIONS = (
    "{{ 7919*7907 }}", "{{ ''.__class__.__mro__[1].__subclasses__() }}", "{% for x in range(10**9) %}x{% endfor %}",
    "${7919*7907}", "<script>alert(1)</script>", "{{ config }}", "{{ self._TemplateReference__context }}",
    "\u202e\u0000 %s%n", "{{", "}}{%",
)
INJECTED_FIELDS = (("data", "debtor", "name"), ("data", "variables", "note"), ("data", "account", "product"))
#: What an evaluated ``{{ 7919*7907 }}`` or ``${7919*7907}`` would print: it must never reach a provider.
#: Eight digits: a four-digit result turned up by chance in the ids and timestamps of a run's requests.
EVALUATED = "62615533"


def request_dict(debtor: str = "deb-hostile") -> dict[str, Any]:
    return ContactRequestedEvent(subject=debtor, source="tests", data=ContactRequested(
        debtor=Debtor(id=debtor, name="Ana Pérez", locale="es-MX", jurisdiction="MX",
                      time_zone="America/Mexico_City", phone="+525512345678", email="ana@example.com"),
        account=Account(id=f"acc-{debtor}", product="card", balance="1234.50", currency="MXN", days_past_due=12,
                        due_date=date(2026, 11, 10), payment_url="https://pay.example.com/x"),
        channel="sms", template="reminder_early", variables={"note": "hola"},
    )).model_dump(mode="json")


def account_dict() -> dict[str, Any]:
    return PaymentReceivedEvent(subject="deb-hostile", data=PaymentReceived(
        debtor_id="deb-hostile", account_id="acc-deb-hostile", amount="10.00", currency="MXN")).model_dump(mode="json")


def outcome_dict() -> dict[str, Any]:
    return DeliveryUpdatedEvent(subject="deb-hostile", data=DeliveryUpdated(
        dispatch_id="d-1", request_id="r-1", debtor_id="deb-hostile", channel="sms", status="delivered",
        provider="twilio", occurred_at=datetime.now(UTC))).model_dump(mode="json")


def dispatch_dict(channel: str) -> dict[str, Any]:
    return ContactDispatchedEvent(subject="deb-hostile", data=ContactDispatched(
        dispatch_id="d-1", request_id="r-1", debtor_id="deb-hostile", account_id="acc-1", channel=channel,  # type: ignore[arg-type]
        to="+525512345678", template=TemplateRef(key="reminder_early", version=1), variables={"note": "hola"},
        deadline=datetime.now(UTC) + timedelta(minutes=5))).model_dump(mode="json")


def template_dict() -> dict[str, Any]:
    return TemplatePublishedEvent(subject="hostile", data=TemplatePublished(
        key="hostile", version=1, channel="sms", locale="es-MX", content=TemplateContent(body="Hola"),
        published_at=datetime.now(UTC))).model_dump(mode="json")


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _leaves(v, (*path, k))] or [path]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _leaves(v, (*path, i))] or [path]
    return [path]


def _set(value: dict[str, Any], path: tuple[Any, ...], new: Any) -> dict[str, Any]:
    out = copy.deepcopy(value)
    target: Any = out
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = new
    return out


def _fresh(value: dict[str, Any]) -> dict[str, Any]:
    """A new event id: every record is its own event, never a redelivery of another."""
    return {**value, "id": str(uuid.uuid4())}


#: Integers a record can carry: orjson (which writes the records) refuses any outside 64 bits, nested too.
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
OTHER_TYPES = st.one_of(INT64, st.floats(allow_nan=False), st.booleans(), st.none(), st.lists(INT64, max_size=3),
                        st.dictionaries(st.text(max_size=5), INT64, max_size=2))


def malformed(base: dict[str, Any]) -> st.SearchStrategy[tuple[str, bytes]]:
    """Records no consumer can read as an event of its topic."""
    encoded = orjson.dumps(base)
    leaves = _leaves(base)
    return st.one_of(
        st.binary(max_size=300).map(lambda b: ("not JSON", b"\x00" + b)),
        st.text(max_size=50).map(lambda t: ("not JSON", b"{" + t.encode() + b" ]")),
        st.integers(min_value=1, max_value=max(1, len(encoded) - 2)).map(
            lambda i: ("invalid UTF-8", encoded[:i] + b"\xff\xfe\xc3" + encoded[i:])),
        st.tuples(st.sampled_from(leaves), OTHER_TYPES).map(
            lambda pv: ("wrong type", orjson.dumps(_fresh(_set(base, pv[0], pv[1]))))),
        st.sampled_from(leaves).map(lambda p: ("1 MB string", orjson.dumps(_fresh(_set(base, p, "x" * HUGE))))),
        st.text(min_size=1, max_size=40).map(
            lambda t: ("unknown type", orjson.dumps(_fresh({**base, "type": "cadencia.unknown." + t}))),
        ),
    )


def hostile_requests() -> st.SearchStrategy[tuple[str, bytes]]:
    """Malformed contact requests, and well-formed ones with hostile data."""
    base = request_dict()

    def request(kind: str, path: tuple[Any, ...], value: Any) -> tuple[str, bytes]:
        return kind, orjson.dumps(_fresh(_set(base, path, value)))

    return st.one_of(
        malformed(base),
        st.sampled_from(("ZZ", "XX", "US-ZZ", "mars", "00")).map(
            lambda j: request("unknown jurisdiction", ("data", "debtor", "jurisdiction"), j)),
        st.sampled_from(("Mars/Olympus", "UTC+99", "Etc/GMT+99", "../../etc/passwd", "America/Nowhere")).map(
            lambda z: request("unknown time zone", ("data", "debtor", "time_zone"), z)),
        st.sampled_from(("-500.00", "0", "-0.0001", "0.0000")).map(
            lambda b: request("negative or zero amount", ("data", "account", "balance"), b)),
        st.sampled_from(("99999999999999.9999", "1e40", "NaN", "-Infinity", "12.34567")).map(
            lambda b: request("absurd amount", ("data", "account", "balance"), b)),
        # Not "XXX" or "XTS": ISO 4217 lists them ("no currency", "testing"), and intake accepts them today.
        st.sampled_from(("ZZZ", "QQQ", "usd", "€€€")).map(
            lambda c: request("unknown currency", ("data", "account", "currency"), c)),
        st.tuples(st.sampled_from(("0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00")),
                  st.sampled_from(("not_before", "expires_at"))).map(
            lambda vf: request("instant with no UTC equivalent", ("data", vf[1]), vf[0])),
        st.tuples(st.sampled_from(INJECTIONS), st.sampled_from(INJECTED_FIELDS)).map(
            lambda ip: request("template injection", ip[1], ip[0])),
    )


def hostile_for(topic: str) -> st.SearchStrategy[tuple[str, bytes]]:
    """``topic`` without its prefix: ``contact.requests``, ``dispatch.sms``, ``templates``..."""
    if topic == "contact.requests":
        return hostile_requests()
    if topic == "account.events":
        return malformed(account_dict())
    if topic == "contact.outcomes":
        return malformed(outcome_dict())
    if topic.startswith("dispatch."):
        return malformed(dispatch_dict(topic.removeprefix("dispatch.")))
    return malformed(template_dict())


def draw(strategy: st.SearchStrategy[tuple[str, bytes]], count: int) -> list[tuple[str, bytes]]:
    """``count`` records hypothesis generates from ``strategy`` (fewer if it has fewer distinct ones)."""
    found: list[tuple[str, bytes]] = []

    @settings(max_examples=count, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(strategy)
    def collect(record: tuple[str, bytes]) -> None:
        found.append(record)

    collect()
    return found[:count]
