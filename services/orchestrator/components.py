"""The orchestrator's parts, each installing its routes and starting its background work.

A component has ``install(app)`` (routes only, no I/O) and ``async start(app, ctx, stack)``
(consumers, schedulers; cleanup registered on ``stack``).
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Protocol

from fastapi import Depends, FastAPI

from services.orchestrator.context import OrchestratorContext
from shared.http import require_role


class Component(Protocol):
    def install(self, app: FastAPI) -> None: ...

    async def start(self, app: FastAPI, ctx: OrchestratorContext, stack: AsyncExitStack) -> None: ...


class PolicySimulation:
    """``POST /v1/policy/evaluate`` for ops (viewer role); the policy itself is pure."""

    def install(self, app: FastAPI) -> None:
        from services.orchestrator.policy.views import router

        app.include_router(router, dependencies=[Depends(require_role("viewer"))])

    async def start(self, app: FastAPI, ctx: OrchestratorContext, stack: AsyncExitStack) -> None:
        from datetime import timedelta

        from services.orchestrator.policy import load_policy

        # The simulation answers with the runtime's own margin, so its send_before is the dispatch's.
        app.state.policy = load_policy(
            extra_dirs=ctx.settings.policy_dirs, send_margin=timedelta(seconds=ctx.settings.send_margin_s)
        )


def load_components() -> list[Component]:
    from services.orchestrator.agents.component import component as agents
    from services.orchestrator.audit.component import component as audit
    from services.orchestrator.dashboard.component import component as dashboard
    from services.orchestrator.dlq.component import component as dead_letters
    from services.orchestrator.imports.component import component as imports
    from services.orchestrator.ops.component import component as ops
    from services.orchestrator.recordings.component import component as recordings
    from services.orchestrator.runtime.component import component as runtime
    from services.orchestrator.selfservice.component import component as self_service
    from services.orchestrator.templates.component import component as templates
    from services.orchestrator.ui.component import component as ui
    from services.orchestrator.webhooks.component import component as webhooks

    return [PolicySimulation(), ui, templates, ops, runtime, dead_letters, dashboard, audit, webhooks, imports,
            self_service, recordings, agents]
