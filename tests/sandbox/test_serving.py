"""The in-process servers the tests and the harness run (``serve_app``)."""

from __future__ import annotations

import httpx

from services.sandbox.testing import free_socket, serve_app
from shared.providers.http import KEEPALIVE_S

#: aiohttp's documented default idle time for a pooled connection (the sandbox's callback client uses it).
AIOHTTP_DEFAULT_KEEPALIVE_S = 15.0


async def _ok(scope: dict, receive: object, send: object) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
    await send({"type": "http.response.body", "body": b"ok"})  # type: ignore[operator]


async def test_a_server_keeps_an_idle_connection_longer_than_any_client_here_reuses_it() -> None:
    """A client must drop an idle connection before the server closes it: when both wait 5 s (uvicorn's and
    httpx's defaults), a request sent on a connection idle for just that long crosses the close and fails
    with ``httpx.ReadError``, as the first sandbox call after a slow start-up once did in a loaded run."""
    sock = free_socket()
    async with serve_app(_ok, sock) as server:
        clients = (httpx.Limits().keepalive_expiry or 0.0, KEEPALIVE_S, AIOHTTP_DEFAULT_KEEPALIVE_S)
        assert server.config.timeout_keep_alive > max(clients)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}") as http:
            assert (await http.get("/")).text == "ok"  # and it serves
