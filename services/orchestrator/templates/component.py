"""The templates component: the editor API, the web editor, and seeding the shipped templates."""

from __future__ import annotations

from contextlib import AsyncExitStack

from fastapi import FastAPI
from sqlalchemy.exc import IntegrityError

from services.orchestrator.context import OrchestratorContext
from services.orchestrator.templates import template_store
from shared.logging import get_logger

log = get_logger(__name__)


class TemplatesComponent:
    def install(self, app: FastAPI) -> None:
        from services.orchestrator.templates.editor import router as editor_router
        from services.orchestrator.templates.test_send import router as test_send_router
        from services.orchestrator.templates.views import router as api_router

        app.include_router(api_router)
        app.include_router(editor_router)
        app.include_router(test_send_router)

    async def start(self, app: FastAPI, ctx: OrchestratorContext, stack: AsyncExitStack) -> None:
        if not ctx.settings.seed_templates:
            return
        try:
            async with ctx.db.transaction() as session:
                if not await template_store.store_is_empty(session):
                    return
                count = await template_store.seed_store(session, ctx.topics.templates, ctx.clock())
        except IntegrityError:  # another instance seeded at the same time
            log.info("templates already seeded by another instance")
            return
        log.info("seeded shipped templates", count=count)


component = TemplatesComponent()
