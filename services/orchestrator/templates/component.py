"""Placeholder: replaced by the templates implementation."""

from __future__ import annotations

from contextlib import AsyncExitStack

from fastapi import FastAPI

from services.orchestrator.context import OrchestratorContext


class _Component:
    def install(self, app: FastAPI) -> None:
        return None

    async def start(self, app: FastAPI, ctx: OrchestratorContext, stack: AsyncExitStack) -> None:
        return None


component = _Component()
