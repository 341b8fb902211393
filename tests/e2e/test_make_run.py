"""``cadencia run`` (what ``make run`` calls) brings the system up, prints its URLs and stops cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tooling.supervisor import PortUnavailable, plan_ports

SERVICES = ("orchestrator", "sandbox", "sms", "whatsapp", "email", "voice")

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_run_starts_every_service_prints_urls_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    # Port 0 everywhere: cadencia run chooses every port together, so none can repeat.
    proc = subprocess.Popen(
        [sys.executable, "-m", "tooling.cli", "run", "--base-port", "0", "--kafka-port", "0", "--sandbox-port", "0"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "CADENCIA_VAR_DIR": str(tmp_path / "var")},
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.strip())
            if line.startswith("demo:"):
                break
        urls = dict(line.split(": ", 1) for line in lines if ": " in line)
        ports = {name: int(urls[name].rsplit(":", 1)[1]) for name in (*SERVICES, "kafka")}
        assert len(set(ports.values())) == len(ports), lines
        assert urls["demo"].endswith("contact requests published")
        for name in SERVICES:
            with urllib.request.urlopen(f"{urls[name]}/health", timeout=5) as response:
                assert response.status == 200, name
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0
    rest = proc.stdout.read() if proc.stdout else ""
    assert "stopped" in rest


@pytest.mark.e2e
def test_run_refuses_a_busy_port_naming_it_before_starting_anything(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "tooling.cli", "run", "--no-demo", "--base-port", "0", "--kafka-port", "0",
             "--sandbox-port", str(busy)],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
            env={**os.environ, "CADENCIA_VAR_DIR": str(tmp_path / "var")},
        )
    assert result.returncode == 2
    assert f"port {busy} for sandbox is already in use" in result.stderr
    assert not (tmp_path / "var" / "log" / "broker.log").exists()  # nothing was started


def test_planned_ports_are_distinct_free_and_keep_the_requested_ones() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        requested = probe.getsockname()[1]
    names = ["orchestrator", "sms", "email", "voice", "whatsapp"]
    for _ in range(20):
        plan = plan_ports(0, 0, requested, names)
        assert plan["sandbox"] == requested
        assert len(set(plan.values())) == len(plan) == len(names) + 2


def test_planning_refuses_the_same_port_for_two_services() -> None:
    with pytest.raises(PortUnavailable, match="asked for both"):
        plan_ports(9000, 9001, 8090, ["orchestrator", "sms"])
