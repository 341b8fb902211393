"""The agents component: ops views of bridged calls (outcomes are applied by the runtime consumer)."""

from __future__ import annotations

from contextlib import AsyncExitStack

from fastapi import FastAPI

from services.orchestrator.context import OrchestratorContext


class AgentsComponent:
    def install(self, app: FastAPI) -> None:
        from services.orchestrator.agents.views import router

        app.include_router(router)

    async def start(self, app: FastAPI, ctx: OrchestratorContext, stack: AsyncExitStack) -> None:
        return None


component = AgentsComponent()
