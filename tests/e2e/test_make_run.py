"""``cadencia run`` (what ``make run`` calls) brings the system up, prints its URLs and stops cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from shared.bus.broker import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_run_starts_every_service_prints_urls_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    base = free_port()
    while any(_in_use(base + i) for i in range(5)):
        base = free_port()
    kafka, sandbox = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "shared.cli", "run", "--base-port", str(base), "--kafka-port", str(kafka),
         "--sandbox-port", str(sandbox)],
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
        assert urls.get("kafka") == f"127.0.0.1:{kafka}", lines
        assert urls.get("orchestrator") == f"http://127.0.0.1:{base}", lines
        assert urls.get("sandbox") == f"http://127.0.0.1:{sandbox}", lines
        assert urls["demo"].endswith("contact requests published")
        for name in ("orchestrator", "sandbox", "sms", "whatsapp", "email", "voice"):
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


def _in_use(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
