"""``cadencia run``: the whole system on one machine, as supervised processes.

The embedded broker, the provider sandbox, the orchestrator and every channel service that
exists, each in its own process with SQLite under ``./var/``; crashed services are restarted
with backoff; Ctrl-C (or SIGTERM) stops everything cleanly. A synthetic demo portfolio is
published once everything is ready.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from shared.bus.broker import EmbeddedBroker

#: Service → port offset from the base port. The sandbox has its own well-known port.
PORTS = {"orchestrator": 0, "sms": 1, "email": 2, "voice": 3, "whatsapp": 4}
SANDBOX_PORT = 8090


def available_services() -> list[str]:
    return [name for name in PORTS if importlib.util.find_spec(f"services.{name}.app") is not None]


class PortUnavailable(RuntimeError):
    """A port ``cadencia run`` was asked to use is taken (or two services were given the same one)."""


def _bind(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn and Tansu bind: TIME_WAIT is fine
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.close()
        raise
    return sock


def plan_ports(base_port: int, kafka_port: int, sandbox_port: int, services: list[str]) -> dict[str, int]:
    """Every port of the local system, chosen together so that no two processes share one.

    A port of 0 means "any free port": those are taken from the kernel while every other port of
    the plan is held open, so they can neither repeat nor land on a requested one. A requested port
    that is already taken raises :class:`PortUnavailable` naming it, before anything starts.
    """
    requested: dict[str, int] = {"kafka": kafka_port, "sandbox": sandbox_port}
    requested.update({name: (base_port + PORTS[name] if base_port else 0) for name in services})
    fixed: dict[int, str] = {}
    for name, port in requested.items():
        if port and port in fixed:
            raise PortUnavailable(f"port {port} is asked for both {fixed[port]} and {name}")
        if port:
            fixed[port] = name
    held: list[socket.socket] = []
    plan: dict[str, int] = {}
    try:
        for port, name in fixed.items():
            try:
                held.append(_bind(port))
            except OSError as exc:
                raise PortUnavailable(
                    f"port {port} for {name} is already in use ({exc.strerror}); stop what holds it or choose "
                    "another (--base-port, --kafka-port, --sandbox-port; 0 picks free ports)"
                ) from exc
            plan[name] = port
        for name, port in requested.items():
            if not port:
                sock = _bind(0)
                held.append(sock)
                plan[name] = int(sock.getsockname()[1])
    finally:
        for sock in held:
            sock.close()
    return plan


@dataclass
class Supervised:
    name: str
    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0
    started_at: float = field(default=0.0)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tooling.cli", "serve", self.name, "--port", str(self.port)],
            env=self.env,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        self.started_at = time.monotonic()

    def supervise(self, now: float) -> None:
        """One look of the supervisor at this service: a process that exited is restarted after a
        backoff that doubles with each restart (1 s, 2 s, 4 s… at most 30 s)."""
        if self.process is not None and self.process.poll() is not None and now >= self.next_start:
            self.restarts += 1
            delay = min(30.0, 0.5 * 2**self.restarts)
            print(f"{self.name} exited ({self.process.returncode}); restarting in {delay:.1f}s", flush=True)
            self.next_start = now + delay
            self.process = None
        elif self.process is None and now >= self.next_start:
            self.start()

    def stop(self, timeout: float = 20) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1) as response:  # noqa: S310 - loopback only
            return bool(response.status == 200)
    except OSError:
        return False


def _wait_healthy(services: list[Supervised], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = list(services)
    while pending and time.monotonic() < deadline:
        for svc in list(pending):
            if svc.process is not None and svc.process.poll() is not None:
                raise RuntimeError(f"{svc.name} exited with {svc.process.returncode}; see {svc.log_path}")
            if _healthy(svc.url):
                pending.remove(svc)
        time.sleep(0.1)
    if pending:
        raise RuntimeError("not healthy in time: " + ", ".join(s.name for s in pending))


def run_local(
    base_port: int = 8000, kafka_port: int = 9092, sandbox_port: int = SANDBOX_PORT, demo: bool = True
) -> int:
    var = Path(os.environ.get("CADENCIA_VAR_DIR", "var"))
    (var / "log").mkdir(parents=True, exist_ok=True)
    names = available_services()
    try:
        ports = plan_ports(base_port, kafka_port, sandbox_port, names)
    except PortUnavailable as exc:
        print(f"cadencia run: {exc}", file=sys.stderr, flush=True)
        return 2
    broker = EmbeddedBroker(port=ports["kafka"], log_path=str(var / "log" / "broker.log"))
    broker.start()
    sandbox_url = f"http://127.0.0.1:{ports['sandbox']}"
    common = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "TWILIO_API_BASE_URL": sandbox_url,
        "SENDGRID_API_BASE_URL": sandbox_url,
        "CADENCIA_ORCHESTRATOR_URL": f"http://127.0.0.1:{ports['orchestrator']}",
        "PYTHONUNBUFFERED": "1",
    }
    # Where the sandbox delivers inbound messages and events: the channel services' webhooks.
    common.update(
        {
            "CADENCIA_SANDBOX_INBOUND__SMS": f"http://127.0.0.1:{ports['sms']}/webhooks/twilio/inbound",
            "CADENCIA_SANDBOX_INBOUND__WHATSAPP": f"http://127.0.0.1:{ports['whatsapp']}/webhooks/twilio/inbound",
            "CADENCIA_SANDBOX_SENDGRID_WEBHOOK_URL": f"http://127.0.0.1:{ports['email']}/webhooks/sendgrid/events",
        }
    )
    services: list[Supervised] = []
    if importlib.util.find_spec("services.sandbox.app") is not None:
        services.append(Supervised("sandbox", ports["sandbox"], common, var / "log" / "sandbox.log"))
    for name in names:
        env = {**common, f"{name.upper()}_DATABASE_URL": f"sqlite+aiosqlite:///{var / (name + '.db')}"}
        services.append(Supervised(name, ports[name], env, var / "log" / f"{name}.log"))

    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        for svc in services:
            svc.start()
        _wait_healthy(services, timeout=90)
        print(f"kafka: {broker.bootstrap_servers}", flush=True)
        for svc in services:
            print(f"{svc.name}: {svc.url}", flush=True)
        if any(s.name == "orchestrator" for s in services):
            print(f"dashboard: http://127.0.0.1:{ports['orchestrator']}/dashboard", flush=True)
            print(f"templates: http://127.0.0.1:{ports['orchestrator']}/templates", flush=True)
        print(f"logs: {var / 'log'}   (Ctrl-C stops everything)", flush=True)
        if demo and any(s.name == "orchestrator" for s in services):
            from tooling.demo import publish_demo_portfolio

            count = publish_demo_portfolio(broker.bootstrap_servers)
            print(f"demo: {count} contact requests published", flush=True)
        while not stopping:
            for svc in services:
                svc.supervise(time.monotonic())
            time.sleep(0.2)
    finally:
        for svc in reversed(services):
            svc.stop()
        broker.stop()
        print("stopped", flush=True)
    return 0
