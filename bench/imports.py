"""Memory ceiling of a portfolio import: 100,000 rows through ``cadencia import`` (a measurement, not a test).

Starts the embedded broker and ``cadencia serve orchestrator`` (SQLite, shipped templates), writes a
CSV of N rows (one in 50 deliberately invalid), runs ``cadencia import`` against it and samples the
orchestrator process's resident memory every 50 ms until the job is done. Reports the file size,
the import time, the rows accepted/refused and the process's RSS before, at its peak (``VmHWM``)
and after: a streaming import keeps the peak flat whatever the file size.

    .venv/bin/python bench/imports.py --rows 100000
    .venv/bin/python bench/imports.py --rows 10000      # compare: the peak should not grow 10x
"""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.orchestrator.imports.client import run_import  # noqa: E402
from shared.bus.broker import EmbeddedBroker  # noqa: E402
from shared.ports import free_port  # noqa: E402

HEADER = "debtor_id,name,jurisdiction,time_zone,phone,email,account_id,product,balance,currency,days_past_due," \
         "due_date,payment_url,template,channel\n"


def write_portfolio(path: Path, rows: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        out.write(HEADER)
        for i in range(rows):
            phone = "12345" if i % 50 == 49 else f"+1212{5_000_000 + i % 4_000_000:07d}"
            out.write(f"bench-{i},María José Pérez {i},US,America/New_York,{phone},d{i}@example.com,acc-{i},card,"
                      f"{100 + i % 9000}.50,USD,{1 + i % 60},2025-03-01,https://pay.example.com/{i},"
                      f"reminder_early,sms\n")


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def wait_ready(url: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/ready", timeout=1) as r:  # noqa: S310 - loopback
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(url)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        portfolio = work / "portfolio.csv"
        write_portfolio(portfolio, args.rows)
        broker = EmbeddedBroker(log_path=str(work / "broker.log")).start()
        port = free_port()
        env = {**os.environ, "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
               "ORCHESTRATOR_DATABASE_URL": f"sqlite+aiosqlite:///{work}/orchestrator.db",
               "CADENCIA_API_KEYS": "editor:bench-key", "CADENCIA_ENV": "test",
               "CADENCIA_ORCHESTRATOR_IMPORT_DIR": str(work), "CADENCIA_ORCHESTRATOR_LOG_LEVEL": "WARNING"}
        log = open(work / "orchestrator.log", "ab")  # noqa: SIM115 - owned by the child
        server = subprocess.Popen([sys.executable, "-m", "tooling.cli", "serve", "orchestrator", "--port", str(port)],
                                  cwd=ROOT, env=env, stdout=log, stderr=log)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(url)
            before = status_kb(server.pid, "VmRSS")
            samples: list[int] = []
            stop = threading.Event()

            def sample() -> None:
                while not stop.is_set():
                    samples.append(status_kb(server.pid, "VmRSS"))
                    stop.wait(0.05)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            progress = io.StringIO()
            started = time.perf_counter()
            status = run_import(str(portfolio), url, "bench-key", out=progress, poll=0.2)
            elapsed = time.perf_counter() - started
            stop.set()
            sampler.join()
            peak = status_kb(server.pid, "VmHWM")
            summary = next(line for line in progress.getvalue().splitlines() if line.startswith("import "))
            print(f"rows: {args.rows:,}  file: {portfolio.stat().st_size / 1e6:.1f} MB  import: {elapsed:.1f} s "
                  f"({args.rows / elapsed:,.0f} rows/s)  exit status {status}")
            print(summary)
            print(f"orchestrator RSS: before {before / 1024:.0f} MiB · peak while importing "
                  f"{max(samples) / 1024:.0f} MiB · process high-water mark {peak / 1024:.0f} MiB · "
                  f"growth {(max(samples) - before) / 1024:.0f} MiB")
        finally:
            server.terminate()
            server.wait(timeout=30)
            broker.stop()


if __name__ == "__main__":
    main()
