"""Provider storms: the SMS and email services against a sandbox answering badly, from its fault API.

20% of requests fail (Twilio 503: provably unprocessed, retried; SendGrid 500: maybe processed, never
retried), bursts of 429 with ``Retry-After`` arrive while the dispatches flow, every answer is slow,
and some requests are accepted and then held past the client's timeout. A tenth of the dispatches
must leave within a few seconds (``send_before``), a few go to invalid numbers. Afterwards:

* every dispatch ends ``sent``, ``failed`` with a reason, ``expired`` or ``unknown`` — each timed out
  after acceptance ``unknown``;
* no dispatch was requested again after an answer that may have been processed (so at most one
  accepted request each), and what was sent has exactly one accepted request, the recorded one;
* an expired dispatch was never accepted, a sent one was accepted before its ``send_before``;
* per sender, the sandbox's own timestamps never exceed the configured rate: in any window of ``w``
  seconds at most ``burst + rate * w`` requests — the token bucket's exact bound where its slots are
  taken — plus one more burst for the way from the bucket to the provider: a request leaves the bucket,
  then waits for the event loop to write it (a connection, a busy loop), so arrivals are later than
  slots by a varying delay and one window can gather up to ``rate * delay`` more; one burst (its time
  to drain at the rate, ``burst / rate`` = 150 ms here) bounds that delay. The sandbox runs in a
  process of its own so its stamps do not wait on this test's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from sqlalchemy import select

import services.sms.app as sms_app
import services.sms.settings as sms_settings
from services.sandbox.settings import Settings as SandboxSettings
from services.sandbox.testing import SandboxHandle
from shared.channels.models import SendLogRecord
from shared.config import KafkaSettings
from shared.events.contracts import ContactDispatchedEvent
from shared.providers.http import CONNECT_FAILED, CONNECTION_LOST
from tests.channel_harness import (
    Publisher,
    Running,
    dispatch_event,
    free_port,
    running_service,
    service_settings,
    template_cached,
    template_event,
    unique_number,
)
from tests.email.harness import Email, address, email_settings_for, email_template

ROOT = Path(__file__).resolve().parents[2]
PER_CHANNEL = 150
RATE, BURST = 20.0, 3  # each sender's configured limit
#: Answers that prove the provider processed nothing (the only ones a dispatch may be retried after).
UNPROCESSED = {429, 503}
TERMINAL = {"sent", "failed", "expired", "unknown"}
SLOW = {"kind": "uniform", "min_ms": 20, "max_ms": 250}
BASE = {
    "twilio": {"provider": "twilio", "latency": SLOW, "error_rate": 0.2, "error_status": 503},
    "sendgrid": {"provider": "sendgrid", "latency": SLOW, "error_rate": 0.2, "error_status": 500},
}
#: Per burst and provider: the next requests answered 429 (Retry-After 1 s), then some accepted and
#: held 2.5 s (past the services' 2 s request timeout).
BURST_429, TIMEOUTS, HOLD_MS = 6, 2, 2500


class SMS:
    Settings = sms_settings.Settings
    create_app = staticmethod(sms_app.create_app)


def sms_events() -> list[ContactDispatchedEvent]:
    events = []
    for n in range(PER_CHANNEL):
        to = unique_number("1211" if n % 25 == 7 else "0001")  # a few invalid numbers: failed, 21211
        events.append(dispatch_event("sms", to, "storm"))
    return events


def email_events() -> list[ContactDispatchedEvent]:
    return [dispatch_event("email", address("deudor"), "storm-mail") for _ in range(PER_CHANNEL)]


def with_send_before(events: list[ContactDispatchedEvent]) -> list[ContactDispatchedEvent]:
    """Every tenth dispatch must leave within 3 s of being published; set just before publishing."""
    soon = datetime.now(UTC) + timedelta(seconds=3)
    return [e.model_copy(update={"data": e.data.model_copy(update={"send_before": soon})}) if n % 10 == 3 else e
            for n, e in enumerate(events)]


async def storm(sandbox: SandboxHandle, bursts: int) -> None:
    """Set the base faults, then a burst of 429s and held requests each time 60 more requests arrived."""
    for faults in BASE.values():
        await sandbox.set_faults(**faults)
    for n in range(1, bursts + 1):
        await sandbox.eventually(lambda n=n: _seen(sandbox, 60 * n), timeout=120, interval=0.05)
        for faults in BASE.values():
            await sandbox.set_faults(**faults, rate_limit_next=BURST_429, retry_after_s=1,
                                     timeout_next=TIMEOUTS, timeout_ms=HOLD_MS)


async def _seen(sandbox: SandboxHandle, count: int) -> bool:
    return int((await sandbox._json("GET", "/sandbox/status"))["requests"]) >= count


@contextlib.asynccontextmanager
async def sandbox_process(log: Path) -> AsyncIterator[SandboxHandle]:
    """The provider (sandbox) in a process of its own, as ``cadencia serve sandbox`` runs it: its receive
    timestamps are the measurement, and this test's event loop (two services, the broker's readers)
    must not delay them."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "CADENCIA_ENV": "test", "CADENCIA_SANDBOX_PORT": str(port),
           "CADENCIA_SANDBOX_LOG_LEVEL": "WARNING"}
    with log.open("ab") as out:
        process = subprocess.Popen([sys.executable, "-m", "tooling.cli", "serve", "sandbox"], cwd=ROOT, env=env,
                                   stdout=out, stderr=out, start_new_session=True)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            handle = SandboxHandle(url, SandboxSettings(env="test", port=port), None, http)
            await wait_until_up(handle, process)
            yield handle
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def wait_until_up(handle: SandboxHandle, process: subprocess.Popen[bytes]) -> None:
    async def up() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"the sandbox exited with {process.returncode}")
        try:
            await handle._json("GET", "/sandbox/status")
        except httpx.HTTPError:
            return False
        return True

    await handle.eventually(up, timeout=30, interval=0.1)


@contextlib.asynccontextmanager
async def services(
    kafka: KafkaSettings, tmp: Path, sandbox: SandboxHandle, redis_url: str
) -> AsyncIterator[tuple[Running, Running]]:
    """SMS with its sender's bucket in Redis (as replicas share it), email with the in-process one."""
    sms = service_settings(SMS, kafka, f"sqlite+aiosqlite:///{tmp / 'sms.db'}", sandbox, free_port(),
                           group=f"g-{uuid.uuid4().hex[:8]}", mps=RATE, burst=BURST)
    sms = sms.model_copy(update={"redis_url": redis_url})
    mail = email_settings_for(kafka, f"sqlite+aiosqlite:///{tmp / 'email.db'}", sandbox, free_port(),
                              group=f"g-{uuid.uuid4().hex[:8]}")
    mail = mail.model_copy(update={"sender": mail.sender.model_copy(update={"rate": RATE, "burst": BURST})})
    async with running_service(SMS, sms) as sms_service, running_service(Email, mail) as email_service:
        yield sms_service, email_service


async def send_log(service: Running) -> dict[str, SendLogRecord]:
    async with service.app.state.db.read_sessions() as session:
        return {r.dispatch_id: r for r in (await session.execute(select(SendLogRecord))).scalars()}


def creating(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in requests if r["method"] == "POST" and r["path"].endswith(("/Messages.json", "/v3/mail/send"))]


def transport_failures(service: Running) -> int:
    """The service's provider requests that failed before an HTTP answer in a way the provider may
    not have seen (``cadencia_channel_sends``: connection not made, or broken)."""
    registry = service.app.state.metrics
    return sum(
        int(registry.get_sample_value("cadencia_channel_sends_total", {"channel": channel, "status": status,
                                                                        "error": error}) or 0)
        for channel in ("sms", "email")
        for status, error in (("retryable", CONNECT_FAILED), ("unknown", CONNECTION_LOST))
    )


def dispatch_of(request: dict[str, Any]) -> str:
    """The dispatch a provider request is for: the status callback URL names it (Twilio), so do the
    custom args (SendGrid)."""
    if request["json"] is not None:
        return str(request["json"]["custom_args"]["dispatch_id"])
    callback = parse_qs(urlsplit(request["form"]["StatusCallback"]).query)
    return callback["dispatch"][0]


def worst_window(stamps: list[float], rate: float) -> tuple[int, float]:
    """The window of this sender's requests that comes closest to ``burst + rate * w``: (requests in
    it, the bound for its length)."""
    worst = (0, 0.0)
    for i, start in enumerate(stamps):
        for j in range(i, len(stamps)):
            count, bound = j - i + 1, BURST + rate * (stamps[j] - start)
            if count - bound > worst[0] - worst[1]:
                worst = (count, bound)
    return worst


async def test_provider_storm_every_dispatch_ends_once_and_no_sender_exceeds_its_rate(
    kafka_settings: KafkaSettings, tmp_path: Path, publisher: Publisher, redis_url: str,
) -> None:
    await publisher.template(template_event("storm", "sms"))
    await publisher.template(email_template("storm-mail"))
    bursts = 3
    async with sandbox_process(tmp_path / "sandbox.log") as sandbox, \
            services(kafka_settings, tmp_path, sandbox, redis_url) as (sms, mail):
        await template_cached(sms, "storm")
        await template_cached(mail, "storm-mail")
        faults = asyncio.create_task(storm(sandbox, bursts))
        await sandbox.eventually(lambda: _faults_set(sandbox), timeout=10)
        events = with_send_before(sms_events() + email_events())
        for event in events:
            await publisher.dispatch(event)

        async def settled() -> bool:
            logged = {**await send_log(sms), **await send_log(mail)}
            return (len(logged) == len(events) and all(r.state in TERMINAL for r in logged.values())
                    and await sms.results_recorded() and await mail.results_recorded())

        await sandbox.eventually(settled, timeout=180, interval=0.2)
        await faults
        logged = {**await send_log(sms), **await send_log(mail)}
        # A held request is recorded once its hold ends: wait for every hold before reading the traffic.
        await sandbox.eventually(lambda: _nothing_held(sandbox), timeout=30, interval=0.1)
        assert sms.app.state.dispatch.limits.inner.fallbacks == 0  # the SMS sender's bucket was Redis's
        broken = transport_failures(sms) + transport_failures(mail)
        traffic = creating(await sandbox.requests())
    by_dispatch: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for request in sorted(traffic, key=lambda r: r["received_ts"]):
        by_dispatch[dispatch_of(request)].append(request)

    states: Counter[str] = Counter()
    held: list[str] = []
    unseen = 0
    for event in events:
        d = event.data
        row = logged[d.dispatch_id]
        states[row.state] += 1
        requests = by_dispatch.get(d.dispatch_id, [])
        taken = [r for r in requests if r["status"] in (201, 202)]
        # Nothing after an answer that may have been processed: at most one accepted, and it is the last.
        assert all(r["status"] in UNPROCESSED for r in requests[:-1]), (row.state, [r["status"] for r in requests])
        # Every request the provider saw was counted; one it may not have seen (the connection failed
        # or broke before an answer) was counted too, and the metric below accounts for each such.
        assert row.attempts >= len(requests), (row.state, row.error_code, row.error_message, requests)
        unseen += row.attempts - len(requests)
        if row.state == "sent":
            assert [r["sid"] for r in taken] == [row.provider_id]
            if d.send_before is not None:
                assert taken[0]["received_ts"] < d.send_before.timestamp()
        elif row.state == "failed":
            assert row.error_code and not taken
        elif row.state == "expired":
            assert row.error_code == "expired" and not taken and d.send_before is not None
        else:
            assert row.state == "unknown"
        if any(r["fault"] == "timeout" for r in requests):
            # Accepted, answer lost: unknown and never resent; ``sent`` only once the provider's own
            # callback proved it has the message (the send log adopts its id).
            held.append(row.state)
            assert row.state == "unknown" or (row.state == "sent" and row.provider_id == requests[-1]["sid"])

    assert unseen <= broken, (unseen, broken)  # none at all on most runs: then every count is exact
    refused = Counter(r["status"] for r in traffic if r["fault"] == "injected")
    assert held and refused[429] and refused[503] and refused[500]  # every kind of fault was met
    per_sender: dict[str, list[float]] = defaultdict(list)
    for request in traffic:
        per_sender[request["sender"]].append(request["received_ts"])
    assert set(per_sender) == {sms.settings.sender.key, mail.settings.sender.from_email}
    for n, stamps in enumerate(per_sender.values()):
        count, bound = worst_window(sorted(stamps), RATE)
        print(f"storm: sender {n}: {len(stamps)} requests, fullest window {count} "  # noqa: T201 - figures
              f"against a bound of {bound:.2f}")
        assert count <= bound + BURST, f"{count} requests in a window allowing {bound:.2f} (+{BURST} in transit)"
    print(f"storm: {len(events)} dispatches {dict(states)}; {len(traffic)} requests, "  # noqa: T201 - figures
          f"refused {dict(refused)}, held past the timeout {Counter(held)}")


async def _faults_set(sandbox: SandboxHandle) -> bool:
    return len(await sandbox._json("GET", "/sandbox/faults")) == len(BASE)


async def _nothing_held(sandbox: SandboxHandle) -> bool:
    return int((await sandbox._json("GET", "/sandbox/status"))["held"]) == 0
