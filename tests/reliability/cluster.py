"""The whole system as real processes, for the crash tests: broker, sandbox, orchestrator and channels.

Every service is ``cadencia serve <name>`` under :class:`tooling.supervisor.Supervised`, and a task here
makes the supervisor's own look (``Supervised.supervise``) every 0.2 s: a process that dies is
restarted with ``cadencia run``'s backoff, on the same port, database and environment. The broker is
an :class:`EmbeddedBroker` on a fixed port, so it can be replaced by a fresh, empty one.

    async with running_cluster(tmp_path, databases) as cluster:
        cluster.kill("sms")                      # SIGKILL; the supervisor brings it back
        await cluster.wait_ready(["sms"])
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from shared.bus.broker import EmbeddedBroker
from shared.config import KafkaSettings
from shared.ports import free_port
from tests.helpers import wait_for
from tooling.supervisor import Supervised

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("orchestrator", "sms", "email", "voice")
#: Provider delays (SMS sent 0.5 s, delivered 1.5 s; calls ring 1 s…) divided by this.
SANDBOX_SPEED = 1000.0
#: The sandbox retries a webhook its receiver refused or never answered, as SendGrid does for 72 hours:
#: after 0.5 s × 2^n provider seconds, n = 0, 1, …, so 19 retries span 0.5 × (2^19 - 1) s ≈ 72.8 hours,
#: about 262 s of real time at ``SANDBOX_SPEED``. A killed service is back long before that, however
#: slowly it starts on a loaded machine, and an event sent while it was down arrives at most about as
#: long again after it is back. (With 14 retries the span was 8 s, and an email service that took
#: longer to restart lost its SendGrid events: its dispatches stayed ``accepted``.) Twilio does not
#: retry status callbacks; SMS and voice reconcile.
CALLBACK_RETRIES = 19


@dataclass
class Cluster:
    folder: Path
    kafka: KafkaSettings
    broker: EmbeddedBroker
    sandbox: Supervised
    services: dict[str, Supervised]
    databases: dict[str, str]
    http: httpx.AsyncClient
    #: SIGKILLs sent, by service.
    kills: Counter[str] = field(default_factory=Counter)
    broker_restarts: int = 0

    @property
    def sandbox_url(self) -> str:
        return self.sandbox.url

    def kill(self, name: str) -> None:
        """SIGKILL the service's process (what the OOM killer or a lost node does) and reap it; the
        supervisor task notices the exit and restarts it after its backoff."""
        svc = self.services[name]
        assert svc.process is not None and svc.process.poll() is None, f"{name} is not running"
        svc.process.send_signal(signal.SIGKILL)
        svc.process.wait(timeout=30)
        self.kills[name] += 1

    def restart_broker(self) -> None:
        """Kill the broker and start a fresh one, empty (memory storage), on the same port."""
        assert self.broker.process is not None
        self.broker.process.send_signal(signal.SIGKILL)
        self.broker.process.wait(timeout=30)
        self.broker.process = None
        self.broker.start(timeout=60)
        self.broker_restarts += 1

    def stop_broker(self) -> None:
        assert self.broker.process is not None
        self.broker.process.send_signal(signal.SIGKILL)
        self.broker.process.wait(timeout=30)
        self.broker.process = None

    async def is_ready(self, name: str) -> bool:
        svc = self.sandbox if name == "sandbox" else self.services[name]
        try:
            return (await self.http.get(f"{svc.url}/ready", timeout=3)).status_code == 200
        except httpx.HTTPError:
            return False

    async def wait_ready(self, names: Iterable[str] = SERVICES, timeout: float = 120) -> None:
        pending = list(names)

        async def all_ready() -> bool:
            nonlocal pending
            pending = [n for n in pending if not await self.is_ready(n)]
            return not pending

        try:
            await wait_for(all_ready, timeout=timeout, interval=0.2, what="services ready")
        except AssertionError as exc:
            raise AssertionError(f"not ready within {timeout}s: {pending}\n{self.tails(pending)}") from exc

    async def sandbox_requests(self) -> list[dict[str, Any]]:
        response = await self.http.get(f"{self.sandbox_url}/sandbox/requests", timeout=60)
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()
        return result

    async def query(self, service: str, sql: str, **params: Any) -> list[Any]:
        """Rows of a read-only query on the service's own database."""
        engine = create_async_engine(self.databases[service])
        try:
            async with engine.connect() as conn:
                return list((await conn.execute(text(sql), params)).all())
        finally:
            await engine.dispose()

    def tails(self, names: Iterable[str] = (*SERVICES, "sandbox"), lines: int = 30) -> str:
        out = []
        for name in names:
            log = self.folder / f"{name}.log"
            if log.exists():
                tail = log.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {name} (last {len(tail)} lines)\n" + "\n".join(tail))
        return "\n".join(out)


def _env(kafka: KafkaSettings, ports: dict[str, int], extra: dict[str, str]) -> dict[str, str]:
    sandbox = f"http://127.0.0.1:{ports['sandbox']}"
    env = {k: v for k, v in os.environ.items() if not k.endswith("DATABASE_URL") and "KAFKA" not in k}
    env.update({
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
        "KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "CADENCIA_TOPIC_PREFIX": kafka.topic_prefix,
        "KAFKA_PARTITIONS": str(kafka.partitions),
        "TWILIO_API_BASE_URL": sandbox,
        "SENDGRID_API_BASE_URL": sandbox,
        "CADENCIA_ORCHESTRATOR_URL": f"http://127.0.0.1:{ports['orchestrator']}",
        "CADENCIA_LOG_LEVEL": "WARNING",
        # The sandbox: fast provider time, webhooks to the channel services, patient webhook retries.
        "CADENCIA_SANDBOX_SPEED_FACTOR": str(SANDBOX_SPEED),
        "CADENCIA_SANDBOX_CALLBACK_RETRIES": str(CALLBACK_RETRIES),
        "CADENCIA_SANDBOX_INBOUND__SMS": f"http://127.0.0.1:{ports['sms']}/webhooks/twilio/inbound",
        "CADENCIA_SANDBOX_SENDGRID_WEBHOOK_URL": f"http://127.0.0.1:{ports['email']}/webhooks/sendgrid/events",
        # Senders as fast as the sandbox: the campaign is about crashes, not a long code's 1 msg/s.
        "CADENCIA_SMS_SENDER__MPS": "1000",
        "CADENCIA_SMS_SENDER__BURST": "100",
        "CADENCIA_EMAIL_SENDER__RATE": "1000",
        "CADENCIA_VOICE_CALLER__CPS": "50",
        "CADENCIA_VOICE_CALLER__BURST": "10",
    })
    for name in SERVICES:
        upper = name.upper()
        # A killed member's partitions move after its session times out: keep that short.
        env[f"CADENCIA_{upper}_KAFKA__SESSION_TIMEOUT_MS"] = "6000"
        env[f"CADENCIA_{upper}_KAFKA__HEARTBEAT_INTERVAL_MS"] = "500"
        env[f"CADENCIA_{upper}_SCHEDULER_INTERVAL"] = "0.5"
        # Messages whose callbacks hit a dead process are looked up at the provider soon after.
        env[f"CADENCIA_{upper}_SENDING__RECONCILE_AFTER_S"] = "3"
        env[f"CADENCIA_{upper}_SENDING__RECONCILE_INTERVAL_S"] = "1"
    env.update(extra)
    return env


async def _supervise(cluster: Cluster) -> None:
    """``cadencia run``'s loop: one look at every service every 0.2 s (its pace, not a wait for a result)."""
    while True:
        for svc in cluster.services.values():
            svc.supervise(time.monotonic())
        await asyncio.sleep(0.2)


@asynccontextmanager
async def running_cluster(
    folder: Path, databases: dict[str, str] | None = None, env: dict[str, str] | None = None,
    partitions: int = 3,
) -> AsyncIterator[Cluster]:
    """The broker, the sandbox and every service of ``SERVICES`` (SQLite files in ``folder`` unless
    ``databases`` names a URL), ready; everything stopped on exit, the supervisor first."""
    ports = {name: free_port() for name in ("kafka", "sandbox", *SERVICES)}
    urls = {name: f"sqlite+aiosqlite:///{folder / name}.db" for name in SERVICES}
    urls.update(databases or {})
    broker = EmbeddedBroker(port=ports["kafka"], log_path=str(folder / "broker.log"))
    kafka = KafkaSettings(bootstrap_servers=broker.bootstrap_servers, topic_prefix=f"c{uuid.uuid4().hex[:8]}.",
                          partitions=partitions)
    common = _env(kafka, ports, env or {})
    sandbox = Supervised("sandbox", ports["sandbox"], common, folder / "sandbox.log")
    services = {name: Supervised(name, ports[name], {**common, f"{name.upper()}_DATABASE_URL": urls[name]},
                                 folder / f"{name}.log") for name in SERVICES}
    broker.start(timeout=60)
    supervisor: asyncio.Task[None] | None = None
    async with httpx.AsyncClient() as http:
        cluster = Cluster(folder, kafka, broker, sandbox, services, urls, http)
        try:
            sandbox.start()
            await cluster.wait_ready(["sandbox"])
            for svc in services.values():
                svc.start()
            supervisor = asyncio.create_task(_supervise(cluster), name="supervisor")
            await cluster.wait_ready(timeout=180)
            yield cluster
        finally:
            if supervisor is not None:
                supervisor.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await supervisor
            for svc in (*services.values(), sandbox):
                await asyncio.to_thread(svc.stop, 20)
            broker.stop()
