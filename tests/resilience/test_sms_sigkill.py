"""Finding 3 of issue 11, as found: SIGKILL of the SMS service while it sends.

Before: no duplicates, but requests stayed ``dispatched`` forever — sends left ``sending`` became
``unknown`` without a terminal status upstream (see the orchestrator test), and messages whose
``delivered`` callbacks hit the dead process were never reconciled. Now, after a restart, every
dispatch gets a final outcome (delivered, or unknown when the request may have left), nothing is
sent twice, the same debtors' next messages are delivered and ``/ready`` is 200.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import httpx

from services.sandbox.testing import SandboxHandle
from shared.channels.settings import SendingSettings
from shared.config import KafkaSettings
from tests.channel_harness import Publisher, dispatch_event, free_port, template_event, unique_number
from tests.helpers import TopicReader, wait_for

ROOT = Path(__file__).resolve().parents[2]
DELIVERY = "cadencia.contact.delivery_updated.v1"
FINAL = {"delivered", "unknown", "failed", "undelivered"}


def _spawn(
    kafka: KafkaSettings, sandbox: SandboxHandle, port: int, db_url: str, group: str, log: Path
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "CADENCIA_ENV": "test",
        "CADENCIA_SMS_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "CADENCIA_SMS_KAFKA__TOPIC_PREFIX": kafka.topic_prefix,
        "CADENCIA_SMS_KAFKA__SESSION_TIMEOUT_MS": "6000",
        "CADENCIA_SMS_KAFKA__HEARTBEAT_INTERVAL_MS": "500",
        "CADENCIA_SMS_KAFKA__PARTITIONS": str(kafka.partitions),
        "CADENCIA_SMS_DATABASE__URL": db_url,
        "CADENCIA_SMS_CONSUMER_GROUP": group,
        "CADENCIA_SMS_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "CADENCIA_SMS_SENDER__MPS": "500",
        "CADENCIA_SMS_SENDING__RECONCILE_AFTER_S": "1",
        "CADENCIA_SMS_SENDING__RECONCILE_INTERVAL_S": "0.5",
        "TWILIO_API_BASE_URL": sandbox.url,
        "TWILIO_ACCOUNT_SID": sandbox.settings.twilio.account_sid,
        "TWILIO_AUTH_TOKEN": sandbox.settings.twilio.auth_token.get_secret_value(),
        "CADENCIA_ORCHESTRATOR_URL": "http://127.0.0.1:9",
    }
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "SMS_DATABASE_URL", "SMS_KAFKA_BOOTSTRAP_SERVERS"):
        env.pop(name, None)
    out = open(log, "ab")  # noqa: SIM115 - the child's log for its lifetime
    return subprocess.Popen([sys.executable, "-m", "tooling.cli", "serve", "sms", "--port", str(port)],
                            cwd=ROOT, env=env, stdout=out, stderr=out)


async def _ready(url: str) -> bool:
    try:
        async with httpx.AsyncClient(base_url=url, timeout=2) as http:
            return (await http.get("/ready")).status_code == 200
    except httpx.HTTPError:
        return False


async def test_sigkill_during_sends_leaves_no_dispatch_without_a_final_outcome_and_sends_nothing_twice(
    kafka_settings: KafkaSettings, sandbox: SandboxHandle, outcomes: TopicReader, publisher: Publisher,
    group: str, tmp_path: Path,
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    db_url = f"sqlite+aiosqlite:///{tmp_path / 'sms.db'}"
    log = tmp_path / "sms.log"
    await publisher.template(template_event("reminder", "sms"))
    # Slow provider answers, so requests are in flight when the process is killed.
    await sandbox.set_faults(provider="twilio", latency={"kind": "fixed", "ms": 150})
    debtors = [f"deb-kill-{i}" for i in range(10)]
    numbers = {d: unique_number("0001") for d in debtors}
    events = [dispatch_event("sms", numbers[d], "reminder", debtor_id=d) for d in debtors for _ in range(6)]

    service = _spawn(kafka_settings, sandbox, port, db_url, group, log)
    try:
        await wait_for(lambda: _ready(url), timeout=60, interval=0.2, what="sms service ready")
        for event in events:
            await publisher.dispatch(event)
        await wait_for(lambda: _posts(sandbox, 15), timeout=60, what="sends under way")
    finally:
        service.send_signal(signal.SIGKILL)
        service.wait(timeout=30)
    killed_with = len(await _message_posts(sandbox))
    assert killed_with < len(events), "the kill came after every send: nothing was interrupted"

    service = _spawn(kafka_settings, sandbox, port, db_url, group, log)
    try:
        ids = {e.data.dispatch_id for e in events}

        def finished() -> set[str]:
            return {e.data.dispatch_id for e in outcomes.of_type(DELIVERY)
                    if e.data.dispatch_id in ids and e.data.status in FINAL}

        await wait_for(lambda: finished() == ids, timeout=120, interval=0.2,
                       what="a final outcome for every dispatch")
        await sandbox.clear_faults()
        # The same debtors (same keys, same partitions) are still served, and the service is ready.
        follow_ups = [dispatch_event("sms", numbers[d], "reminder", debtor_id=d) for d in debtors[:3]]
        for event in follow_ups:
            await publisher.dispatch(event)
        await wait_for(lambda: all(_status(outcomes, e.data.dispatch_id) >= {"delivered"} for e in follow_ups),
                       timeout=60, what="follow-ups delivered")
        assert await _ready(url)
    finally:
        service.terminate()
        # A clean stop: uvicorn re-raises the SIGTERM it handled once shut down (never the crash status).
        assert service.wait(timeout=30) in (0, -signal.SIGTERM)

    # Nothing sent twice: each dispatch reached the provider at most once.
    posts = await _message_posts(sandbox)
    per_callback = Counter(p["form"]["StatusCallback"] for p in posts)
    assert max(per_callback.values()) == 1
    # Each dispatch has exactly one final outcome, and unknown only where the request may have left.
    for dispatch_id in ids:
        final = _status(outcomes, dispatch_id) & FINAL
        assert len(final) == 1 or final == {"unknown", "delivered"}, (dispatch_id, final)
    # Only dispatches claimed and not recorded at the kill can be unknown (at most ``max_claimed`` of
    # them); one run here: 16 of 60 requests made before the kill, then 56 delivered and 4 unknown.
    unknown = [d for d in ids if _status(outcomes, d) & FINAL == {"unknown"}]
    assert len(unknown) <= SendingSettings().max_claimed


async def _message_posts(sandbox: SandboxHandle) -> list[dict]:
    return [r for r in await sandbox.requests(provider="twilio") if r["path"].endswith("/Messages.json")]


async def _posts(sandbox: SandboxHandle, n: int) -> bool:
    return len(await _message_posts(sandbox)) >= n


def _status(reader: TopicReader, dispatch_id: str) -> set[str]:
    return {e.data.status for e in reader.of_type(DELIVERY) if e.data.dispatch_id == dispatch_id}
