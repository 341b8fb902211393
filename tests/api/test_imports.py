"""Portfolio import: the API job (progress, per-row errors with line numbers, summary) and the CLI."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from services.orchestrator.app import create_app
from services.orchestrator.imports.client import run_import
from services.orchestrator.imports.rows import read_rows
from shared.config import KafkaSettings
from tests.channel_harness import free_socket, serve_app
from tests.helpers import wait_for
from tests.orchestrator.conftest import FakeClock, make_settings, running

EDITOR = {"Authorization": "Bearer editor-key"}
VIEWER = {"Authorization": "Bearer viewer-key"}
HEADER = ("debtor_id,name,jurisdiction,time_zone,phone,account_id,balance,currency,days_past_due,template,channel,"
          "var.note")

CSV = "\n".join([
    HEADER,
    'imp-d1,"Pérez, Ana",US,America/New_York,+12125550123,acc-1,100.50,USD,3,reminder,sms,hola',
    "imp-d2,Luis,US,America/New_York,+12125550124,acc-2,,USD,3,reminder,sms,",          # line 3: no balance
    "imp-d3,Rosa,US,America/New_York,12345,acc-3,10,USD,3,reminder,sms,",               # line 4: not E.164
    "",
    'imp-d4,"Eva\nMaría",US,America/New_York,+12125550125,acc-4,10,USD,3,reminder,sms,',  # lines 6-7
    "imp-d5,Tom,US,America/New_York,+12125550126,acc-5,10,USD,3,reminder,sms",           # line 8: a cell short
]) + "\n"


async def finished(o: Any, job_id: str) -> dict[str, Any] | None:
    job = (await o.http.get(f"/v1/imports/{job_id}", headers=VIEWER)).json()
    return job if job["state"] in ("done", "failed") else None


async def test_an_import_job_reports_progress_per_row_errors_and_a_summary_and_requests_follow(
    kafka_settings: KafkaSettings, database_url: str
) -> None:
    async with running(make_settings(kafka_settings, database_url), FakeClock()) as o:
        answer = await o.http.post("/v1/imports", headers=EDITOR,
                                   files={"file": ("portfolio.csv", CSV.encode(), "text/csv")})
        assert answer.status_code == 202, answer.text
        job = answer.json()
        assert job["state"] in ("queued", "running", "done") and job["bytes_total"] == len(CSV.encode())
        done = await wait_for(lambda: finished(o, job["id"]), what="import done")
        assert (done["state"], done["progress"], done["rows_read"], done["rows_accepted"], done["rows_failed"]) == (
            "done", 1.0, 5, 2, 3)
        assert done["created_by"] == "editor"
        errors = (await o.http.get(f"/v1/imports/{job['id']}/errors", headers=VIEWER)).json()
        assert errors["total"] == 3
        by_line = {e["line"]: e["message"] for e in errors["items"]}
        assert sorted(by_line) == [3, 4, 8]
        assert "account.balance" in by_line[3] and "E.164" in by_line[4] and "12 columns" in by_line[8]

        # Accepted rows are contact requests, decided like any other; their ids name the job and line.
        async def decided(line: int) -> dict[str, Any] | None:
            answer = await o.http.get(f"/v1/contact-requests/imp-{job['id']}-{line}", headers=VIEWER)
            return answer.json() if answer.status_code == 200 else None

        first = await wait_for(lambda: decided(2), what="row 2 decided")
        assert first["debtor_id"] == "imp-d1" and first["status"] == "dispatched"
        multiline = await wait_for(lambda: decided(6), what="row 6 decided")
        assert multiline["debtor_id"] == "imp-d4"
        debtor = (await o.http.get("/v1/debtors/imp-d1", headers=VIEWER)).json()
        assert debtor["debtor"]["name"] == "Pérez, Ana"

        # JSON Lines: one ContactRequested per line.
        good = {"debtor": {"id": "imp-j1", "jurisdiction": "US", "time_zone": "America/New_York",
                           "phone": "+12125550127"},
                "account": {"id": "acc-j1", "balance": "5", "currency": "USD", "days_past_due": 1},
                "template": "reminder", "channel": "sms"}
        jsonl = json.dumps(good) + "\n{not json\n" + json.dumps({**good, "template": ""}) + "\n"
        answer = await o.http.post("/v1/imports", headers=EDITOR,
                                   files={"file": ("p.jsonl", jsonl.encode(), "application/x-ndjson")})
        done = await wait_for(lambda: finished(o, answer.json()["id"]), what="jsonl import done")
        assert (done["rows_accepted"], done["rows_failed"]) == (1, 2)
        errors = (await o.http.get(f"/v1/imports/{done['id']}/errors", headers=VIEWER)).json()["items"]
        assert [e["line"] for e in errors] == [2, 3] and errors[0]["message"].startswith("json:")

        # Typed refusals: an unknown format, a viewer's key, an unknown job.
        other = await o.http.post("/v1/imports", headers=EDITOR, files={"file": ("p.xlsx", b"x", "x")})
        assert other.status_code == 415 and other.headers["content-type"] == "application/problem+json"
        assert (await o.http.post("/v1/imports", headers=VIEWER,
                                  files={"file": ("p.csv", CSV.encode(), "text/csv")})).status_code == 403
        assert (await o.http.get("/v1/imports/nope", headers=VIEWER)).status_code == 404


@pytest.fixture
async def server(kafka_settings: KafkaSettings, tmp_path: Path) -> AsyncIterator[str]:
    sock = free_socket()
    settings = make_settings(kafka_settings, f"sqlite+aiosqlite:///{tmp_path}/o.db", seed_templates=True)
    app = create_app(settings)
    async with app.router.lifespan_context(app), serve_app(app, sock):
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


async def test_the_cli_uploads_a_file_draws_progress_and_lists_refused_rows(server: str, tmp_path: Path) -> None:
    path = tmp_path / "portfolio.csv"
    path.write_text(CSV.replace(",reminder,", ",reminder_early,"), encoding="utf-8")
    out = io.StringIO()
    status = await asyncio.to_thread(run_import, str(path), server, "editor-key", out, 0.05)
    text = out.getvalue()
    assert status == 2, text  # some rows were refused
    assert "] 100.0%" in text and "5 rows · 2 accepted · 3 refused" in text
    assert "line 3: account.balance" in text and "line 4:" in text and "line 8:" in text
    assert await asyncio.to_thread(run_import, str(tmp_path / "x.txt"), server, "editor-key", io.StringIO()) == 1


def test_a_json_line_nested_too_deep_or_with_a_huge_integer_is_a_row_error_and_the_next_rows_are_read() -> None:
    """``json.loads`` raises RecursionError and ValueError (not JSONDecodeError) for these: the whole job
    failed on one such line instead of refusing it and reading on."""
    good = {"debtor": {"id": "imp-j9", "jurisdiction": "US", "phone": "+12125550127"},
            "account": {"id": "acc-j9", "balance": "5", "currency": "USD", "days_past_due": 1}, "template": "reminder"}
    lines = [b"[" * 100_000 + b"]" * 100_000, b'{"debtor": ' + b"1" * 5000 + b"}", json.dumps(good).encode()]
    rows = list(read_rows(io.BytesIO(b"\n".join(lines) + b"\n"), "jsonl"))
    assert [(r.line, r.request is not None) for r in rows] == [(1, False), (2, False), (3, True)]
    assert rows[0].errors == ["json: nested too deep"]
    assert rows[1].errors == ["json: Exceeds the limit (4300 digits) for integer string conversion"]
