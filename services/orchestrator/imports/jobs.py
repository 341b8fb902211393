"""Runs import jobs: the uploaded file streams through, a chunk of rows at a time.

Each valid row becomes a ``contact.requested`` event on the intake topic, decided by the
runtime like any other request; its id (``imp-<job>-<line>``) makes a re-publish harmless. A
row the schema or the intake checks refuse is recorded with its line number. Memory holds one
chunk, whatever the file's size; the job's counters move once per chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from itertools import islice
from typing import IO

from sqlalchemy import update
from starlette.concurrency import run_in_threadpool

from services.orchestrator.context import OrchestratorContext
from services.orchestrator.imports.models import ImportJob, ImportRowError
from services.orchestrator.imports.rows import Format, Row, read_rows
from services.orchestrator.runtime.validation import problems
from shared.events.contracts import ContactRequestedEvent
from shared.logging import get_logger

log = get_logger(__name__)
CHUNK = 500
#: Errors kept per job (all are counted); enough to fix a file, bounded for a file of garbage.
MAX_STORED_ERRORS = 10_000


def _next_chunk(rows: Iterator[Row], source: IO[bytes]) -> tuple[list[Row], int]:
    chunk = list(islice(rows, CHUNK))
    return chunk, source.tell()


class ImportRunner:
    def __init__(self, ctx: OrchestratorContext, jurisdictions: set[str]) -> None:
        self.ctx, self.jurisdictions = ctx, jurisdictions
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, job_id: str, path: str, fmt: Format) -> None:
        task = asyncio.create_task(self._run(job_id, path, fmt), name=f"import-{job_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def fail_interrupted(self) -> None:
        """Jobs a stopped process left running are failed; their rows so far were published."""
        async with self.ctx.db.transaction() as session:
            await session.execute(update(ImportJob).where(ImportJob.state.in_(("queued", "running"))).values(
                state="failed", error="interrupted by a restart; re-import the rows after the last one read",
                finished_at=self.ctx.clock()))

    async def _run(self, job_id: str, path: str, fmt: Format) -> None:
        try:
            await self._set(job_id, state="running")
            await self._import(job_id, path, fmt)
            await self._set(job_id, state="done", finished_at=self.ctx.clock())
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await self._set(job_id, state="failed", error="stopped", finished_at=self.ctx.clock())
            raise
        except Exception as exc:
            log.error("import failed", job_id=job_id, error=f"{type(exc).__name__}: {exc}")
            await self._set(job_id, state="failed", error=f"{type(exc).__name__}: {exc}"[:2000],
                            finished_at=self.ctx.clock())
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)

    async def _set(self, job_id: str, **values: object) -> None:
        async with self.ctx.db.transaction() as session:
            await session.execute(update(ImportJob).where(ImportJob.id == job_id).values(**values))

    async def _import(self, job_id: str, path: str, fmt: Format) -> None:
        topic = self.ctx.topics.contact_requests
        stored_errors = 0
        with open(path, "rb") as source:
            rows = read_rows(source, fmt)
            while True:
                chunk, position = await run_in_threadpool(_next_chunk, rows, source)
                if not chunk:
                    break
                events: list[tuple[str, ContactRequestedEvent]] = []
                errors: list[ImportRowError] = []
                failed = 0
                for row in chunk:
                    if row.request is not None:
                        row.errors = problems(row.request, self.jurisdictions)
                    if row.errors or row.request is None:
                        failed += 1
                        if stored_errors < MAX_STORED_ERRORS:
                            stored_errors += 1
                            errors.append(ImportRowError(job_id=job_id, line=row.line, message="; ".join(row.errors)))
                        continue
                    events.append((topic, ContactRequestedEvent(
                        id=f"imp-{job_id}-{row.line}", source=f"cadencia/orchestrator/imports/{job_id}",
                        subject=row.request.debtor.id, data=row.request)))
                if events:
                    await self.ctx.producer.publish_many(events)
                async with self.ctx.db.transaction() as session:
                    session.add_all(errors)
                    await session.execute(update(ImportJob).where(ImportJob.id == job_id).values(
                        rows_read=ImportJob.rows_read + len(chunk),
                        rows_accepted=ImportJob.rows_accepted + len(events),
                        rows_failed=ImportJob.rows_failed + failed,
                        bytes_read=position,
                    ))
        await self._set(job_id, bytes_read=os.path.getsize(path))
