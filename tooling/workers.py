"""``cadencia serve <service> --workers N``: N processes of one service behind one HTTP port.

Each worker is an ordinary ``cadencia serve`` process — its own lifespan, producer, consumers and
database pool — so the workers of a service form one consumer group and Kafka spreads the topics'
partitions among them exactly as it would among replicas on several machines.

The port: this parent binds and listens once, then every worker inherits the listening socket and
serves it (the gunicorn model; uvicorn's own ``--workers`` does the same underneath). The kernel
hands each new connection to one of the workers, so provider callbacks reach whichever worker
accepts them — correct because every worker shares the service's database. Chosen over uvicorn's
``workers=`` because that one needs an import string (a factory with no arguments), so our
``create_app(settings)`` could not be handed the parsed settings, and because its supervisor
restarts a dead worker by itself, hiding a crashed consumer from Kubernetes or compose. Chosen over
``SO_REUSEPORT`` (each worker binding its own socket) because a busy port then fails in every worker
instead of once, here, and connections queued on a worker that exits are reset rather than served
by the others.

Failure policy: one restart policy, the outer supervisor's. If a worker exits while the service is
not stopping, the others are stopped and this process exits with the worker's status (a crashed
consumer's is 70), so compose, Kubernetes or ``cadencia run`` restarts the whole set. SIGTERM or
SIGINT stops every worker gracefully (each commits what it has done).

Refused where several processes would break a guarantee:

- **SQLite**: each debtor's events leave the outbox in order because one relay reads a database
  file, and SQLite has no lock to elect one relay among processes; several processes on one file
  would interleave their relays. On PostgreSQL an advisory lock keeps one relay active per database.
- **the sandbox**: its provider state lives in memory; two processes would be two providers.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import make_url

from shared.events.contracts import CHANNELS
from shared.logging import get_logger
from tooling.cli import EXIT_FATAL

log = get_logger("cadencia.workers")

#: Exit status when the command itself is refused (as ``argparse`` does for bad usage).
EXIT_REFUSED = 2
#: Time the workers get to stop gracefully (uvicorn's graceful shutdown plus the lifespan's own).
STOP_TIMEOUT_S = 40.0
_PR_SET_PDEATHSIG = 1


def refusal(service: str, database_url: str | None, workers: int, redis_url: str = "") -> str | None:
    """Why ``workers`` processes of ``service`` must not share ``database_url``; None when they may."""
    if workers <= 1:
        return None
    if database_url is None:
        return (f"--workers {workers}: the {service} keeps its state in memory, so each process would be a "
                "separate service; run one")
    if make_url(database_url).get_backend_name() == "sqlite":
        return (
            f"--workers {workers} needs PostgreSQL: on SQLite one outbox relay per database file keeps each "
            "debtor's events in order, and several processes on one file would break that order. Set "
            f"{service.upper()}_DATABASE_URL=postgresql+asyncpg://… or run one worker"
        )
    if service == "voice" and not redis_url:
        # Agent pacing counts calls in flight per queue: a call's final status reaching another worker
        # would never free its slot, so without a shared store the workers would stop dialling.
        return (f"--workers {workers} needs REDIS_URL: the voice service's agent pacing (calls in flight, the "
                "hold line) must be shared by its workers")
    return None


def listen(host: str, port: int, backlog: int = 2048) -> socket.socket:
    """Bind and listen on ``host:port`` (0: a free port) with a socket the workers can inherit."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is fine
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(backlog)
    sock.set_inheritable(True)
    return sock


def parent_death_signal() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has the child SIGTERMed when its parent dies, so no worker outlives a
    ``kill -9`` of its parent and keeps consuming as a member of the group (Linux; None elsewhere).

    ``prctl`` is looked up here, in the parent: the forked child only makes the one call."""
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent, sigterm = os.getpid(), int(signal.SIGTERM)

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, sigterm)
        if os.getppid() != parent:  # the parent died before the call: act as if the signal came
            os.kill(os.getpid(), sigterm)

    return preexec


def _exit_status(returncode: int) -> int:
    """A worker's status as ours: a signal death becomes 128 + signal, as a shell reports it."""
    return 128 - returncode if returncode < 0 else returncode


class Workers:
    """The worker processes of one service, sharing one listening socket."""

    def __init__(self, service: str, host: str, sock: socket.socket, count: int, env: dict[str, str]) -> None:
        self.service, self.host, self.sock, self.count, self.env = service, host, sock, count, env
        self.port = int(sock.getsockname()[1])
        self.processes: list[subprocess.Popen[bytes]] = []

    def command(self, index: int) -> list[str]:
        return [
            sys.executable, "-m", "tooling.cli", "serve", self.service,
            "--host", self.host, "--port", str(self.port),
            "--listen-fd", str(self.sock.fileno()), "--worker", str(index),
        ]

    def start(self) -> None:
        preexec = parent_death_signal()
        for index in range(self.count):
            self.processes.append(subprocess.Popen(
                self.command(index),
                env=self.env,
                pass_fds=(self.sock.fileno(),),
                # Its own session: a terminal's Ctrl-C reaches this parent only, which stops each
                # worker once (a second signal would make uvicorn skip its graceful shutdown).
                start_new_session=True,
                preexec_fn=preexec,
            ))

    def first_exit(self) -> tuple[int, int] | None:
        """``(worker index, return code)`` of a worker that has exited, if any."""
        for index, process in enumerate(self.processes):
            code = process.poll()
            if code is not None:
                return index, code
        return None

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> list[int]:
        """SIGTERM every worker still running, wait, SIGKILL what is left; their return codes."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker did not stop in time; killing it", pid=process.pid)
                process.kill()
                process.wait()
        return [p.returncode for p in self.processes]


def serve_workers(
    service: str, settings: Any, count: int, *, database_url: str | None,
    migrate: Callable[[], int] | None = None, poll_interval: float = 0.2,
) -> int:
    """Run ``count`` worker processes of ``service`` until SIGTERM/SIGINT or until one of them exits.

    ``database_url`` is the service's database (None for the sandbox, which has none). ``migrate``
    (when the service migrates at start-up) runs once here first, so the workers never race each
    other through Alembic; they are then told only to check the schema.
    """
    reason = refusal(service, database_url, count, getattr(settings, "redis_url", ""))
    if reason is not None:
        print(f"cadencia serve {service}: {reason}", file=sys.stderr, flush=True)  # noqa: T201
        return EXIT_REFUSED
    if service in CHANNELS and not getattr(settings, "redis_url", ""):
        log.warning("without REDIS_URL each worker limits its senders on its own: together they may send up to "
                    "N times a sender's rate", service=service, workers=count)
    env = dict(os.environ)
    if migrate is not None and getattr(settings, "migrate_on_start", False):
        if migrate() != 0:
            print(f"cadencia serve {service}: migrating the database failed (see the log above)",  # noqa: T201
                  file=sys.stderr, flush=True)
            return 1
        env[f"CADENCIA_{service.upper()}_MIGRATE_ON_START"] = "false"
    try:
        sock = listen(settings.host, settings.port)
    except OSError as exc:
        print(f"cadencia serve {service}: cannot listen on {settings.host}:{settings.port} ({exc.strerror})",  # noqa: T201
              file=sys.stderr, flush=True)
        return EXIT_REFUSED
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    workers = Workers(service, settings.host, sock, count, env)
    status = 0
    try:
        workers.start()
        log.info("workers started", service=service, workers=count, port=workers.port,
                 pids=[p.pid for p in workers.processes])
        while not stopping:
            exited = workers.first_exit()
            if exited is not None:
                index, code = exited
                # An exit nobody asked for (even a clean one) leaves the set incomplete: fail it whole.
                status = _exit_status(code) or EXIT_FATAL
                log.error("worker exited; stopping the others", service=service, worker=index, code=code)
                break
            time.sleep(poll_interval)  # a supervisor's poll between checks, not a wait for a result
    finally:
        codes = workers.stop()
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if status == 0:
        # Stopped on request: report a worker that failed while stopping.
        status = next((_exit_status(c) for c in codes if c not in (0, -signal.SIGTERM)), 0)
    log.info("workers stopped", service=service, codes=codes)
    return status
