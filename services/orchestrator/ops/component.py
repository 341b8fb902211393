"""The ops component: routes, and the runtime's hooks (counters, campaign control) before it starts."""

from __future__ import annotations

from contextlib import AsyncExitStack

from fastapi import FastAPI

from services.orchestrator.context import OrchestratorContext


class OpsComponent:
    def install(self, app: FastAPI) -> None:
        from services.orchestrator.ops.views import router

        app.include_router(router)

    async def start(self, app: FastAPI, ctx: OrchestratorContext, stack: AsyncExitStack) -> None:
        from services.orchestrator.ops.hooks import OpsHooks

        # Read by the runtime component as it builds the runtime, before its consumer starts, so
        # no event is ever applied without its counters.
        app.state.runtime_hooks = OpsHooks


component = OpsComponent()
