"""The self-service component: the debtor's page and ops' agreement downloads (the runtime owns the state)."""

from __future__ import annotations

from contextlib import AsyncExitStack

from fastapi import FastAPI

from services.orchestrator.context import OrchestratorContext


class SelfServiceComponent:
    def install(self, app: FastAPI) -> None:
        from services.orchestrator.selfservice.views import ops, router

        app.include_router(router)
        app.include_router(ops)

    async def start(self, app: FastAPI, ctx: OrchestratorContext, stack: AsyncExitStack) -> None:
        return None


component = SelfServiceComponent()
