"""The recordings component: the ops view (events are applied by the runtime's outcomes consumer)."""

from __future__ import annotations

from contextlib import AsyncExitStack

from fastapi import FastAPI

from services.orchestrator.context import OrchestratorContext


class RecordingsComponent:
    def install(self, app: FastAPI) -> None:
        from services.orchestrator.recordings.views import router

        app.include_router(router)

    async def start(self, app: FastAPI, ctx: OrchestratorContext, stack: AsyncExitStack) -> None:
        return None


component = RecordingsComponent()
