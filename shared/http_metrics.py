"""HTTP request metrics for every service: count and latency by method, route template and status.

Plain ASGI (like ``BodyLimit``) so it costs next to nothing on webhook and sandbox hot paths. The
route is the matched template (``/v1/contact-requests/{request_id}``), never the raw path, so ids
do not become label values; unmatched paths count as ``<unmatched>``.
"""

from __future__ import annotations

import time
from typing import Any
from weakref import WeakKeyDictionary

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED = "<unmatched>"

#: One pair of instruments per registry: an app's direct routes (``shared.app.DirectRoute``) have a
#: middleware chain of their own, counted in the same series as the rest of the app.
_INSTRUMENTS: WeakKeyDictionary[CollectorRegistry, tuple[Counter, Histogram]] = WeakKeyDictionary()


def _instruments(registry: CollectorRegistry) -> tuple[Counter, Histogram]:
    found = _INSTRUMENTS.get(registry)
    if found is None:
        requests = Counter("cadencia_http_requests", "HTTP requests by method, route and status",
                           ["method", "route", "status"], registry=registry)
        latency = Histogram("cadencia_http_request_seconds", "HTTP request latency (to the last byte sent)",
                            ["method", "route"], registry=registry,
                            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))
        found = _INSTRUMENTS[registry] = (requests, latency)
    return found


class HttpMetrics:
    def __init__(self, app: ASGIApp, registry: CollectorRegistry) -> None:
        self.app = app
        self.requests, self.latency = _instruments(registry)
        #: The labelled children already used: ``labels()`` validates and locks on every call.
        self._counters: dict[tuple[str, str, str], Any] = {}
        self._timers: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", None) or UNMATCHED
            method = scope.get("method", "GET")
            counted = (method, route, str(status))
            counter = self._counters.get(counted)
            if counter is None:
                counter = self._counters[counted] = self.requests.labels(*counted)
            counter.inc()
            timed = (method, route)
            timer = self._timers.get(timed)
            if timer is None:
                timer = self._timers[timed] = self.latency.labels(*timed)
            timer.observe(time.perf_counter() - started)
