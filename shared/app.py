"""What every service's ``create_app`` shares: health, readiness, metrics, errors, auth keys."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel
from starlette._utils import is_async_callable
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.config import ServiceSettings
from shared.http import Problem, ProblemDetails, document_problems, install_problem_handlers, problem_response
from shared.http_metrics import HttpMetrics
from shared.loop_lag import LoopLag
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


Endpoint = Callable[[Request], Coroutine[Any, Any, Response]]


class DirectRoute(APIRoute):
    """The route of a hot provider callback (one or two per message): its endpoint is called with the
    request and its query parameters (strings) and makes its own response. FastAPI's dependency
    solving and response handling are skipped; OpenAPI documents the route from the endpoint's
    signature as any other, and errors (``Problem``) answer as anywhere.

    An app that serves the route's router with :meth:`ServiceApp.serve_directly` also skips
    Starlette's routing and FastAPI's own middleware for it (see :class:`ServiceApp`)."""

    def get_route_handler(self) -> Endpoint:
        endpoint = self.endpoint
        names = [(p.name, p.alias) for p in self.dependant.query_params]

        async def handle(request: Request) -> Response:
            query = request.query_params
            response: Response = await endpoint(request, **{name: query.get(alias) for name, alias in names})
            return response

        return handle


_DIRECT_ROUTE = "cadencia.direct_route"


class ServiceApp(FastAPI):
    """A FastAPI app whose :class:`DirectRoute` routes (registered with :meth:`serve_directly`) are
    answered by a short ASGI chain of their own instead of the full stack:

    the same error answer for an unexpected exception (``ServerErrorMiddleware`` with the app's
    handler: problem+json 500, logged), the app's own middleware (``add_middleware``: HTTP metrics,
    trace context, body limit — new instances of the same classes, counting in the same series),
    the app's exception handlers (``Problem`` → problem+json), then the route's endpoint. Skipped:
    Starlette's routing (an exact method and path lookup instead), FastAPI's native OpenTelemetry
    middleware and its app-wide body limit (neither is configured by any service: traces are
    ``shared.tracing``'s, body limits ``BodyLimit``'s) and its exit stack for dependencies with
    ``yield`` (a direct route solves no dependencies). Behind a ``root_path`` every request takes
    the full stack."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._direct_routes: dict[tuple[str, str], DirectRoute] = {}
        self._direct_stack: ASGIApp | None = None

    def serve_directly(self, router: APIRouter) -> None:
        """Answer ``router``'s direct routes (included without a prefix) by the short chain."""
        for route in router.routes:
            if isinstance(route, DirectRoute) and not route.param_convertors:
                for method in route.methods or ():
                    self._direct_routes[(method, route.path)] = route

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and self._direct_routes and not self.root_path and not scope.get("root_path"):
            route = self._direct_routes.get((scope["method"], scope["path"]))
            if route is not None:
                scope["app"] = self
                scope[_DIRECT_ROUTE] = route
                if self._direct_stack is None:
                    self._direct_stack = self._build_direct_stack()
                await self._direct_stack(scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    def _build_direct_stack(self) -> ASGIApp:
        error_handler = None
        handlers: dict[Any, Callable[..., Any]] = {}
        for key, value in self.exception_handlers.items():
            if key in (500, Exception):
                error_handler = value
            else:
                handlers[key] = value
        app: ASGIApp = _DirectEndpoint(handlers)
        for cls, args, kwargs in reversed(self.user_middleware):
            app = cls(app, *args, **kwargs)
        return ServerErrorMiddleware(app, handler=error_handler, debug=self.debug)


class _DirectEndpoint:
    """The innermost part of a direct route's chain: the endpoint, and the app's exception handlers
    for what it raises (as Starlette's ``ExceptionMiddleware`` looks them up)."""

    def __init__(self, handlers: dict[Any, Callable[..., Any]]) -> None:
        self.handlers = handlers
        self.endpoints: dict[int, Endpoint] = {}  # by id(route): routes are not hashable

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Routed here, as Starlette's router would (a 413 refused before it counts as unmatched).
        route: DirectRoute = scope[_DIRECT_ROUTE]
        scope.update(router=scope["app"].router, route=route, endpoint=route.endpoint, path_params={})
        endpoint = self.endpoints.get(id(route))
        if endpoint is None:
            endpoint = self.endpoints[id(route)] = route.get_route_handler()
        request = Request(scope, receive, send)
        try:
            response = await endpoint(request)
        except Exception as exc:
            handler = self._handler_for(exc)
            if handler is None:
                raise
            if is_async_callable(handler):
                response = await handler(request, exc)
            else:
                response = await run_in_threadpool(handler, request, exc)
        await response(scope, receive, send)

    def _handler_for(self, exc: Exception) -> Callable[..., Any] | None:
        if isinstance(exc, StarletteHTTPException) and exc.status_code in self.handlers:
            return self.handlers[exc.status_code]
        for cls in type(exc).__mro__:
            if cls in self.handlers:
                return self.handlers[cls]
        return None


def build_app(settings: ServiceSettings, title: str, lifespan: Lifespan | None = None) -> ServiceApp:
    """A FastAPI app with /health, /ready, /metrics (HTTP request metrics and the event loop's lag
    included), problem+json errors and API keys on state.

    Services register readiness probes by appending to ``app.state.ready_checks`` in their lifespan.
    """
    app = ServiceApp(title=title, version="0.1.0", lifespan=_lag_timed(lifespan))
    app.state.settings = settings
    app.state.api_keys = settings.api_key_identities()
    app.state.ready_checks = []
    app.state.body_limits = {}
    app.state.metrics = CollectorRegistry()
    app.state.loop_lag = LoopLag(app.state.metrics)
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


def _lag_timed(lifespan: Lifespan | None) -> Lifespan:
    """``lifespan`` with the event loop's lag timed while it runs (``shared.loop_lag``), from before the
    service's own start-up (migrations, a consumer's first batch) to after its shutdown."""

    @asynccontextmanager
    async def timed(app: FastAPI) -> AsyncIterator[None]:
        lag: LoopLag = app.state.loop_lag
        lag.start()
        try:
            if lifespan is None:
                yield
            else:
                async with lifespan(app):
                    yield
        finally:
            lag.stop()

    return timed


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
