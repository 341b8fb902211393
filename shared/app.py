"""What every service's ``create_app`` shares: health, readiness, metrics, errors, auth keys."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.config import ServiceSettings
from shared.http import Problem, ProblemDetails, document_problems, install_problem_handlers, problem_response
from shared.http_metrics import HttpMetrics
from shared.tracing import continued, parse_traceparent


class Health(BaseModel):
    status: str
    service: str


class Ready(BaseModel):
    status: str
    service: str


ReadyCheck = Callable[[], Awaitable[None]]
Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


class BodyLimit:
    """Refuse bodies over the configured size before they are read into memory.

    Plain ASGI (not ``BaseHTTPMiddleware``): it sits in front of every request, webhooks and the
    sandbox's hot path included, so it must cost next to nothing. Declared lengths are checked up
    front; chunked bodies are counted as they stream and cut off at the limit.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self._limit_for(scope)
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                if value.isdigit() and int(value) > max_bytes:
                    await self._too_large(scope, receive, send, max_bytes)
                    return
                break
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > max_bytes:
                    raise Problem(413, "Payload too large", f"limit is {max_bytes} bytes")
            return message

        await self.app(scope, counted, send)

    def _limit_for(self, scope: Scope) -> int:
        """A route that takes files (``app.state.body_limits[path prefix]``) may allow more."""
        app = scope.get("app")
        limits: dict[str, int] = getattr(getattr(app, "state", None), "body_limits", None) or {}
        path: str = scope.get("path", "")
        for prefix, limit in limits.items():
            if path.startswith(prefix):
                return limit
        return self.max_bytes

    async def _too_large(self, scope: Scope, receive: Receive, send: Send, max_bytes: int) -> None:
        response = problem_response(413, "Payload too large", f"limit is {max_bytes} bytes")
        await response(scope, receive, send)


class TraceContextMiddleware:
    """Continue the caller's trace: the W3C ``traceparent`` header, else a ``traceparent`` query parameter
    (provider callbacks carry it in the URL we gave them). Events the request stages inherit it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        value = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"traceparent"), None)
        if value is None and b"traceparent=" in scope.get("query_string", b""):
            found = parse_qs(scope["query_string"].decode("latin-1")).get("traceparent")
            value = found[0] if found else None
        with continued(parse_traceparent(value)):
            await self.app(scope, receive, send)


def build_app(settings: ServiceSettings, title: str, lifespan: Lifespan | None = None) -> FastAPI:
    """A FastAPI app with /health, /ready, /metrics (HTTP request metrics included), problem+json
    errors and API keys on state.

    Services register readiness probes by appending to ``app.state.ready_checks`` in their lifespan.
    """
    app = FastAPI(title=title, version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    app.state.api_keys = settings.api_key_identities()
    app.state.ready_checks = []
    app.state.body_limits = {}
    app.state.metrics = CollectorRegistry()
    install_problem_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(TraceContextMiddleware)
    app.add_middleware(HttpMetrics, registry=app.state.metrics)  # outermost: counts 413s too

    @app.get("/health", tags=["ops"], response_model=Health, operation_id="health")
    async def health() -> Health:
        return Health(status="ok", service=settings.service_name)

    @app.get("/ready", tags=["ops"], response_model=Ready, responses={
        503: {"model": ProblemDetails, "description": "A dependency is unreachable (the failed ``checks``)"}})
    async def ready(request: Request) -> JSONResponse:
        failures: dict[str, str] = {}
        fatal = getattr(request.app.state, "fatal", None)
        if fatal is not None:
            failures["fatal"] = f"{type(fatal).__name__}: {fatal}"
        for check in request.app.state.ready_checks:
            try:
                await check()
            except Exception as exc:  # readiness reports, it does not raise
                failures[getattr(check, "__name__", "check")] = f"{type(exc).__name__}: {exc}"
        if failures:
            return problem_response(503, "Not ready", "dependencies unreachable", checks=failures)
        return JSONResponse({"status": "ready", "service": settings.service_name})

    @app.get("/metrics", tags=["ops"], response_class=PlainTextResponse,
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                              "description": "Prometheus text exposition format"}})
    async def metrics(request: Request) -> Response:
        return Response(generate_latest(request.app.state.metrics), media_type=CONTENT_TYPE_LATEST)

    def openapi() -> dict[str, Any]:
        # Built on first use, after every service has added its routes.
        if app.openapi_schema is None:
            app.openapi_schema = document_problems(FastAPI.openapi(app))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def fail_service(app: FastAPI, reason: BaseException) -> None:
    """A part the service cannot work without (a consumer) died: stop being ready and ask the
    process to exit non-zero, so its supervisor (``cadencia run``, compose, Kubernetes) restarts it.

    ``cadencia serve`` installs ``app.state.exit_on_fatal``; an app run in-process (tests) only
    turns not-ready.
    """
    app.state.fatal = reason
    exit_hook = getattr(app.state, "exit_on_fatal", None)
    if exit_hook is not None:
        exit_hook(reason)


#: The exit status of a served process whose vital part failed (as ``cadencia serve`` exits then).
EXIT_FATAL = 70


def abandon_hook(app: FastAPI) -> Callable[[BaseException], None]:
    """Like :func:`fatal_hook`, but the served process exits at once, as if killed: no clean
    shutdown, so nothing is committed on the way out. For a state the process must not act on any
    more (consumer positions and members of a broker that is gone); what it had not finished is in
    its database (outbox, send log) and is picked up by the restarted process, as after a SIGKILL."""

    def abandon(reason: BaseException) -> None:
        app.state.fatal = reason
        if getattr(app.state, "exit_on_fatal", None) is not None:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_FATAL)

    return abandon


def fatal_hook(app: FastAPI) -> Callable[[BaseException], None]:
    """``on_fatal`` for a consumer runner of ``app``."""
    return lambda reason: fail_service(app, reason)


async def noop_lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield
