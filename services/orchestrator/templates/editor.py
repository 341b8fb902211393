"""``/templates``: the web editor, server-rendered (Jinja2, autoescape) with a little vanilla JS.

The page itself holds no data; its script calls ``/v1/templates`` with the API key the user typed
(kept in ``sessionStorage``), so the page needs no session of its own.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from services.orchestrator.templates.editor_i18n import COOKIE, LANGUAGES, PAGE, SCRIPT, choose
from shared.http import Problem

HERE = Path(__file__).parent
STATIC = {"editor.js": "text/javascript", "editor.css": "text/css"}

router = APIRouter(tags=["template editor"], include_in_schema=False)


@lru_cache(maxsize=1)
def pages() -> Environment:
    return Environment(loader=FileSystemLoader(HERE / "web"), autoescape=select_autoescape(["html"]))


@router.get("/templates", response_class=HTMLResponse)
async def editor_page(request: Request, lang: str | None = None) -> HTMLResponse:
    language = choose(lang, request.cookies.get(COOKIE), request.headers.get("accept-language"))
    html = pages().get_template("editor.html").render(
        static=request.url_for("editor_static", name="editor.js").path.rsplit("/", 1)[0],
        channels=["sms", "whatsapp", "email", "voice"],
        lang=language, languages=LANGUAGES, t=PAGE[language], messages=SCRIPT[language], cookie=COOKIE,
    )
    response = HTMLResponse(html, headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"})
    if lang in LANGUAGES:  # chosen in the page: remember it
        response.set_cookie(COOKIE, language, max_age=365 * 86400, samesite="strict", path="/templates")
    return response


@router.get("/templates/static/{name}", name="editor_static")
async def editor_static(name: str) -> FileResponse:
    if name not in STATIC:
        raise Problem(404, "Not found")
    return FileResponse(HERE / "static" / name, media_type=STATIC[name])
