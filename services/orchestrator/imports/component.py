"""Portfolio import over HTTP: ``POST /v1/imports`` (multipart CSV or JSON Lines) answers a job
whose progress, per-row errors (with line numbers) and summary are read back while it runs.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from contextlib import AsyncExitStack
from datetime import datetime
from typing import Literal

from fastapi import APIRouter, FastAPI, File, Query, Request, UploadFile
from pydantic import BaseModel, ConfigDict, computed_field
from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool

from services.orchestrator.context import CtxDep, OrchestratorContext
from services.orchestrator.imports.jobs import ImportRunner
from services.orchestrator.imports.models import ImportJob, ImportRowError
from services.orchestrator.imports.rows import format_of
from shared.http import DB_INT_MAX, PROBLEM_RESPONSES, EditorKeyDep, Problem, ViewerKeyDep

router = APIRouter(prefix="/v1/imports", tags=["imports"], responses=PROBLEM_RESPONSES)


class ImportJobView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    filename: str
    format: Literal["csv", "jsonl"]
    state: Literal["queued", "running", "done", "failed"]
    bytes_total: int
    bytes_read: int
    rows_read: int
    rows_accepted: int
    rows_failed: int
    error: str | None = None
    created_by: str
    created_at: datetime
    finished_at: datetime | None = None

    @computed_field  # type: ignore[prop-decorator]
    @property
    def progress(self) -> float:
        """Share of the file read, 0 to 1."""
        if self.state == "done":
            return 1.0
        return round(self.bytes_read / self.bytes_total, 4) if self.bytes_total else 0.0


class RowErrorView(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    line: int
    message: str


class RowErrorPage(BaseModel):
    total: int
    items: list[RowErrorView]


async def _job(ctx: OrchestratorContext, job_id: str) -> ImportJob:
    async with ctx.db.sessions() as session:
        job = await session.get(ImportJob, job_id)
    if job is None:
        raise Problem(404, "Not found", f"no import {job_id!r}", "/problems/not-found")
    return job


def _spool(upload: UploadFile, directory: str | None) -> tuple[str, int]:
    """Copy the upload to a file the job owns (the request's copy goes when the request ends)."""
    fd, path = tempfile.mkstemp(prefix="cadencia-import-", suffix=".part", dir=directory)
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(upload.file, out, 1 << 20)
        size = out.tell()
    return path, size


@router.post("", status_code=202, response_model=ImportJobView, operation_id="create_import")
async def create_import(ctx: CtxDep, who: EditorKeyDep, request: Request,
                        file: UploadFile = File(description="CSV (.csv) or JSON Lines (.jsonl)")) -> ImportJobView:
    """Start importing a portfolio file: each row is a contact request. Poll the job for progress."""
    fmt = format_of(file.filename or "")
    if fmt is None:
        raise Problem(415, "Unsupported file", "upload a .csv or .jsonl file", "/problems/import-format")
    path, size = await run_in_threadpool(_spool, file, ctx.settings.import_dir or None)
    job = ImportJob(id=uuid.uuid4().hex, filename=(file.filename or "")[:300], format=fmt, state="queued",
                    bytes_total=size, bytes_read=0, rows_read=0, rows_accepted=0, rows_failed=0,
                    created_by=who.name, created_at=ctx.clock())
    async with ctx.db.transaction() as session:
        session.add(job)
    runner: ImportRunner = request.app.state.imports
    runner.submit(job.id, path, fmt)
    return ImportJobView.model_validate(job)


@router.get("/{job_id}", response_model=ImportJobView, operation_id="get_import")
async def get_import(job_id: str, ctx: CtxDep, who: ViewerKeyDep) -> ImportJobView:
    """The job's state, progress (share of the file read) and summary counts."""
    return ImportJobView.model_validate(await _job(ctx, job_id))


@router.get("/{job_id}/errors", response_model=RowErrorPage, operation_id="list_import_errors")
async def list_errors(job_id: str, ctx: CtxDep, who: ViewerKeyDep, limit: int = Query(100, ge=1, le=1000),
                      offset: int = Query(0, ge=0, le=DB_INT_MAX)) -> RowErrorPage:
    """The refused rows by line number, with every reason."""
    await _job(ctx, job_id)
    async with ctx.db.sessions() as session:
        total = int(await session.scalar(select(func.count()).select_from(ImportRowError)
                                         .where(ImportRowError.job_id == job_id)) or 0)
        rows = (await session.execute(select(ImportRowError).where(ImportRowError.job_id == job_id)
                                      .order_by(ImportRowError.line).limit(limit).offset(offset))).scalars()
        return RowErrorPage(total=total, items=[RowErrorView.model_validate(r) for r in rows])


class ImportsComponent:
    def install(self, app: FastAPI) -> None:
        app.include_router(router)
        app.state.body_limits["/v1/imports"] = app.state.settings.import_max_bytes

    async def start(self, app: FastAPI, ctx: OrchestratorContext, stack: AsyncExitStack) -> None:
        from services.orchestrator.runtime import policy_port

        policy = getattr(app.state, "policy", None) or policy_port.load(ctx.settings.policy_dirs)
        runner = ImportRunner(ctx, set(policy_port.jurisdictions(policy)))
        await runner.fail_interrupted()
        app.state.imports = runner
        stack.push_async_callback(runner.stop)


component = ImportsComponent()
