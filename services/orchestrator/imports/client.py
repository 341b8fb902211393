"""``cadencia import FILE.csv|FILE.jsonl``: upload a portfolio to the orchestrator and follow the job.

The file streams up (httpx sends it in chunks), then a progress bar follows the job until it is
done; the summary and the first refused rows (with line numbers) are printed at the end. Exit
status: 0 all rows accepted, 1 the import failed, 2 some rows were refused.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import httpx

BAR = 30


def bar(job: dict[str, Any]) -> str:
    filled = int(BAR * float(job["progress"]))
    return (f"\r[{'#' * filled}{'-' * (BAR - filled)}] {float(job['progress']) * 100:5.1f}%  "
            f"{job['rows_read']:,} rows · {job['rows_accepted']:,} accepted · {job['rows_failed']:,} refused")


def run_import(path: str, url: str, key: str, out: TextIO = sys.stderr, poll: float = 0.5,
               transport: httpx.BaseTransport | None = None) -> int:
    file = Path(path)
    if file.suffix.lower() not in (".csv", ".jsonl", ".ndjson"):
        print(f"cadencia import: {path}: expected a .csv or .jsonl file", file=out)
        return 1
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=httpx.Timeout(30.0, write=None),
                      transport=transport) as http:
        with file.open("rb") as body:
            answer = http.post("/v1/imports", files={"file": (file.name, body, "application/octet-stream")})
        if answer.status_code != 202:
            problem = answer.json() if answer.headers.get("content-type", "").endswith("json") else {}
            print(f"cadencia import: refused ({answer.status_code}): {problem.get('detail') or answer.text}", file=out)
            return 1
        job = answer.json()
        while True:
            out.write(bar(job))
            out.flush()
            if job["state"] in ("done", "failed"):
                break
            time.sleep(poll)  # a terminal's progress bar: poll the job, nothing to wait on
            job = http.get(f"/v1/imports/{job['id']}").json()
        out.write("\n")
        if job["state"] == "failed":
            print(f"import {job['id']} failed: {job['error']}", file=out)
            return 1
        print(f"import {job['id']}: {job['rows_read']:,} rows, {job['rows_accepted']:,} accepted, "
              f"{job['rows_failed']:,} refused", file=out)
        if job["rows_failed"]:
            errors = http.get(f"/v1/imports/{job['id']}/errors", params={"limit": 20}).json()
            for err in errors["items"]:
                print(f"  line {err['line']}: {err['message']}", file=out)
            if errors["total"] > len(errors["items"]):
                print(f"  ... {errors['total'] - len(errors['items']):,} more: GET /v1/imports/{job['id']}/errors",
                      file=out)
            return 2
    return 0


def default_url() -> str:
    return os.environ.get("CADENCIA_ORCHESTRATOR_URL", "http://127.0.0.1:8000")


def default_key() -> str:
    return os.environ.get("CADENCIA_API_KEY", "dev-admin-key")
