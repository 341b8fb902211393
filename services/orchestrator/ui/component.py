"""``/ui/{name}``: the shared static pieces every page includes (no build step, no CDN)."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse

from services.orchestrator.context import OrchestratorContext
from shared.http import Problem

STATIC = Path(__file__).parent / "static"
TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8"}
FILES = {p.name: TYPES[p.suffix] for p in STATIC.iterdir() if p.suffix in TYPES}
router = APIRouter(include_in_schema=False)


@router.get("/ui/{name}")
async def ui_static(name: str) -> FileResponse:
    if name not in FILES:  # a fixed list: no path is ever built from the request
        raise Problem(404, "Not found", f"no file {name!r}")
    return FileResponse(STATIC / name, media_type=FILES[name], headers={"Cache-Control": "no-cache"})


class UiComponent:
    def install(self, app: FastAPI) -> None:
        app.include_router(router)

    async def start(self, app: FastAPI, ctx: OrchestratorContext, stack: AsyncExitStack) -> None:
        return None


component = UiComponent()
