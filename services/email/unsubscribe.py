"""One-click unsubscribe (RFC 8058): the link's confirmation page and its ``POST``.

A ``GET`` only shows the button (mail scanners follow links); the ``POST`` — the button, or the mail
client's one-click — stages one ``unsubscribe`` response per dispatch.
"""

from __future__ import annotations

import html

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from services.email.tokens import UNSUBSCRIBE_PATH
from services.email.webhooks import EmailContextDep, EmailWebhookContext, stage_unsubscribe
from shared.channels.callbacks import first_receipt
from shared.channels.models import SendLogRecord
from shared.http import Problem


async def _row(session: AsyncSession, dispatch_id: str | None, provider_id: str | None) -> SendLogRecord | None:
    for condition in (
        SendLogRecord.dispatch_id == dispatch_id if dispatch_id else None,
        SendLogRecord.provider_id == provider_id if provider_id else None,
    ):
        if condition is None:
            continue
        stmt = select(SendLogRecord).where(condition, SendLogRecord.channel == "email").limit(1)
        row = (await session.execute(stmt.with_for_update())).scalars().first()
        if row is not None:
            return row
    return None


async def apply_unsubscribe(ctx: EmailWebhookContext, dispatch_id: str) -> bool:
    """The recipient of ``dispatch_id`` unsubscribed by the link (committed when this returns); False if
    the dispatch is unknown."""
    now = ctx.clock()

    async def unsubscribe(session: AsyncSession) -> str:
        row = await _row(session, dispatch_id, None)
        if row is None:
            return "unknown"
        if await first_receipt(session, row.dispatch_id, "unsubscribe", now):
            stage_unsubscribe(ctx, session, row, now)
            return "unsubscribe"
        return "again"

    outcome = await ctx.writer.run(unsubscribe)
    if outcome == "unsubscribe":
        ctx.count("unsubscribe")
    return bool(outcome != "unknown")


async def dispatch_known(ctx: EmailWebhookContext, dispatch_id: str) -> bool:
    async with ctx.db.sessions() as session:
        stmt = select(SendLogRecord.dispatch_id).where(
            SendLogRecord.dispatch_id == dispatch_id, SendLogRecord.channel == "email"
        )
        return (await session.execute(stmt)).first() is not None


_PAGE = """<!doctype html>
<html lang="es"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<meta name="robots" content="noindex"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;color:#222}}
button{{font-size:1rem;padding:.6rem 1.2rem}}</style></head><body>
{content}
</body></html>
"""


def _confirm_page(action: str) -> str:
    content = f"""<h1>¿Dejar de recibir estos correos?</h1>
<p>Pulsa el botón para darte de baja de los correos sobre esta cuenta.</p>
<h1 lang="en">Stop receiving these emails?</h1>
<p lang="en">Press the button to unsubscribe from emails about this account.</p>
<form method="post" action="{html.escape(action, quote=True)}">
<input type="hidden" name="List-Unsubscribe" value="One-Click">
<button type="submit">Darme de baja / Unsubscribe</button>
</form>"""
    return _PAGE.format(title="Darse de baja / Unsubscribe", content=content)


def _done_page() -> str:
    content = """<h1>Listo: te diste de baja.</h1>
<p>No te enviaremos más correos sobre esta cuenta.</p>
<h1 lang="en">Done: you are unsubscribed.</h1>
<p lang="en">We will not send you more emails about this account.</p>"""
    return _PAGE.format(title="Baja confirmada / Unsubscribed", content=content)


def _not_found() -> Problem:
    return Problem(404, "Not Found", "unknown or invalid unsubscribe link", "/problems/unsubscribe-link")


def unsubscribe_routes() -> APIRouter:
    """``GET`` and ``POST /unsubscribe/{token}``; they read ``app.state.webhooks``."""
    router = APIRouter()

    @router.get(UNSUBSCRIBE_PATH, response_class=HTMLResponse, tags=["unsubscribe"])
    async def unsubscribe_page(token: str, ctx: EmailContextDep) -> HTMLResponse:
        # Mail scanners follow links: a GET only shows the button, it never unsubscribes.
        dispatch_id = ctx.tokens.verify(token)
        if dispatch_id is None or not await dispatch_known(ctx, dispatch_id):
            raise _not_found()
        return HTMLResponse(_confirm_page(f"/unsubscribe/{token}"))

    @router.post(UNSUBSCRIBE_PATH, response_class=HTMLResponse, tags=["unsubscribe"])
    async def unsubscribe_one_click(token: str, ctx: EmailContextDep) -> HTMLResponse:
        dispatch_id = ctx.tokens.verify(token)
        if dispatch_id is None or not await apply_unsubscribe(ctx, dispatch_id):
            raise _not_found()
        return HTMLResponse(_done_page())

    return router
