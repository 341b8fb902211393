"""`make bench` reports whether decisions/s stay flat as the ledger grows (issue 12): one run of
``bench/orchestrator.py --sizes`` seeds a fresh portfolio per size, decides the same requests' mix on
each, and gives each rate as a ratio to the first. What is checked here is that the figures are
comparable and the run leaves nothing behind, never how fast it went."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

ROOT = Path(__file__).resolve().parents[3]


def run_bench(tmp_path: Path, *args: str) -> dict[str, object]:
    out = tmp_path / "decisions.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "orchestrator.py"), "--requests", "120", "--batch", "50",
         "--json", str(out), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=110,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "decisions/s by portfolio size, one run" in done.stdout, done.stdout
    figures: dict[str, object] = json.loads(out.read_text())
    return figures


def check_comparable(figures: dict[str, object], sizes: list[int]) -> None:
    runs = figures["sizes"]
    assert isinstance(runs, list)
    assert [r["debtors"] for r in runs] == sizes
    # every request went to its own debtor, so every size decided the same mix
    assert [r["mix"] for r in runs] == [{"dispatched": 120}] * len(sizes)
    assert all(r["requests"] == 120 and r["rate"] > 0 for r in runs)
    assert [r["ratio_to_first"] for r in runs] == [r["rate"] / runs[0]["rate"] for r in runs]


def test_sizes_on_sqlite_decide_the_same_mix_and_are_compared_to_the_first(tmp_path: Path) -> None:
    figures = run_bench(tmp_path, "--sizes", "200,2000")
    assert figures["database"] == "sqlite"
    check_comparable(figures, [200, 2000])


@pytest.mark.postgres
async def test_sizes_on_postgresql_get_throwaway_databases_that_are_dropped(
    tmp_path: Path, pg_admin_dsn: str
) -> None:
    figures = run_bench(tmp_path, "--sizes", "321,3210", "--postgres-admin", pg_admin_dsn)
    assert figures["database"] == "postgresql"
    check_comparable(figures, [321, 3210])
    conn = await asyncpg.connect(pg_admin_dsn)
    try:
        left = await conn.fetch("SELECT datname FROM pg_database WHERE datname LIKE 'cadencia_bench_%'")
    finally:
        await conn.close()
    assert [r["datname"] for r in left if r["datname"].endswith(("_orchestrator_321", "_orchestrator_3210"))] == []


def test_a_kept_database_cannot_hold_several_sizes(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "orchestrator.py"), "--sizes", "10,20",
         "--postgres", "postgresql+asyncpg://nobody@127.0.0.1:1/kept"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2
    assert "--sizes needs a fresh database per size" in done.stderr
