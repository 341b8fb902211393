"""Run the sandbox inside a test's event loop and drive it.

    async with running_sandbox(inbound={"sms": receiver_url}) as sandbox:
        client = sandbox.twilio_client()            # the official client, pointed at the sandbox
        await asyncio.to_thread(client.messages.create, to=..., from_=..., body="hola")
        await sandbox.eventually(lambda: sandbox.callbacks(kind="message-status"), timeout=5)

Synchronous official clients (``twilio.rest.Client`` with its default HTTP client, ``SendGridAPIClient``)
block: call them through ``asyncio.to_thread`` so the in-loop server can answer.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import httpx
import uvicorn

from services.sandbox.app import create_app
from services.sandbox.settings import Settings

T = TypeVar("T")


class SandboxHandle:
    """A running sandbox: its URL, settings, and its control API as async methods."""

    def __init__(self, url: str, settings: Settings, app: Any, http: httpx.AsyncClient) -> None:
        self.url = url
        self.settings = settings
        self.app = app
        self.http = http

    # -- official clients -------------------------------------------------------------------------------

    def twilio_client(self, http_client: Any = None) -> Any:
        """``twilio.rest.Client`` with the configured credentials, its API domain pointed here.

        Pass ``twilio.http.async_http_client.AsyncTwilioHttpClient()`` to use the ``*_async`` methods.
        """
        from twilio.rest import Client

        client = Client(
            self.settings.twilio.account_sid,
            self.settings.twilio.auth_token.get_secret_value(),
            http_client=http_client,
        )
        client.api.base_url = self.url
        return client

    def sendgrid_client(self) -> Any:
        from sendgrid import SendGridAPIClient

        return SendGridAPIClient(self.settings.sendgrid.api_key.get_secret_value(), host=self.url)

    # -- control API ------------------------------------------------------------------------------------

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.http.request(method, path, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None

    async def requests(
        self, provider: str | None = None, to: str | None = None, since: float | None = None, **filters: str
    ) -> list[dict[str, Any]]:
        params = {k: v for k, v in {"provider": provider, "to": to, "since": since, **filters}.items() if v}
        result: list[dict[str, Any]] = await self._json("GET", "/sandbox/requests", params=params)
        return result

    async def callbacks(self, **filters: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._json("GET", "/sandbox/callbacks", params=filters)
        return result

    async def set_scenario(self, address: str, **scenario: Any) -> None:
        await self._json("PUT", f"/sandbox/scenarios/{address}", json=scenario)

    async def set_faults(self, **faults: Any) -> None:
        await self._json("PUT", "/sandbox/faults", json=faults)

    async def clear_faults(self) -> None:
        await self._json("DELETE", "/sandbox/faults")

    async def inbound(self, from_: str, to: str, body: str, url: str | None = None) -> dict[str, Any]:
        payload = {"from": from_, "to": to, "body": body, "url": url}
        result: dict[str, Any] = await self._json("POST", "/sandbox/twilio/inbound", json=payload)
        return result

    async def set_inbound_urls(self, sms: str = "", whatsapp: str = "", voice: str = "") -> None:
        await self._json("PUT", "/sandbox/twilio/webhooks", json={"sms": sms, "whatsapp": whatsapp, "voice": voice})

    async def set_sendgrid_webhook(self, url: str) -> None:
        await self._json("PUT", "/sandbox/sendgrid/webhook", json={"url": url})

    async def sendgrid_public_key(self) -> str:
        result: dict[str, str] = await self._json("GET", "/sandbox/sendgrid/public-key")
        return result["public_key"]

    async def call(self, sid: str) -> dict[str, Any]:
        """The call resource plus ``transcript`` (every verb run) and ``spoken`` (all ``<Say>`` text)."""
        result: dict[str, Any] = await self._json("GET", f"/sandbox/calls/{sid}")
        return result

    async def queues(self) -> list[dict[str, Any]]:
        """The ``<Enqueue>`` queues and who waits in each, front first."""
        result: list[dict[str, Any]] = await self._json("GET", "/sandbox/queues")
        return result

    async def message(self, sid: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._json("GET", f"/sandbox/messages/{sid}")
        return result

    async def reset(self) -> None:
        await self._json("POST", "/sandbox/reset")

    async def eventually(self, probe: Callable[[], Awaitable[T]], timeout: float = 15.0, interval: float = 0.01) -> T:
        """Poll ``probe`` until it returns something truthy; ``TimeoutError`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            value = await probe()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout}s (last value {value!r})")
            await asyncio.sleep(interval)


def free_socket(host: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.set_inheritable(True)
    return sock


#: How long :func:`serve_app`'s servers keep an idle connection: well past any client's own expiry.
KEEP_ALIVE_S = 30


@asynccontextmanager
async def serve_app(app: Any, sock: socket.socket, startup_timeout: float = 10.0) -> AsyncIterator[uvicorn.Server]:
    """Serve an ASGI app with uvicorn in the current event loop on an already-bound socket.

    The server keeps an idle connection open longer (:data:`KEEP_ALIVE_S`) than the clients that reuse
    them here (httpx drops one after 5 s idle, the services' provider client after 4 s): with uvicorn's
    default of 5 s, a request sent on a connection idle for just 5 s can cross the server closing it and
    fail with ``httpx.ReadError`` (the first call after a slow start-up under a loaded test run).
    """
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="auto", timeout_graceful_shutdown=2,
                            timeout_keep_alive=KEEP_ALIVE_S)
    server = uvicorn.Server(config)
    task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("uvicorn exited during startup")
        if time.monotonic() > deadline:
            raise TimeoutError("uvicorn did not start")
        await asyncio.sleep(0.005)
    try:
        yield server
    finally:
        server.should_exit = True
        await task
        sock.close()


@asynccontextmanager
async def running_sandbox(clock: Any = None, **overrides: Any) -> AsyncIterator[SandboxHandle]:
    """Start the sandbox on a free loopback port; defaults to ``env="test"`` and ``speed_factor=1000``.

    ``clock`` (``now() -> epoch seconds``) stamps its records, e.g. the clock the services under test read.
    """
    sock = free_socket()
    port = sock.getsockname()[1]
    overrides.setdefault("env", "test")
    overrides.setdefault("speed_factor", 1000.0)
    settings = Settings(host="127.0.0.1", port=port, **overrides)
    app = create_app(settings, clock)
    url = f"http://127.0.0.1:{port}"

    async with serve_app(app, sock), httpx.AsyncClient(base_url=url, timeout=30) as http:
        try:
            yield SandboxHandle(url, settings, app, http)
        finally:
            # Release responses held by timeout faults so shutdown is prompt.
            app.state.sandbox.closing.set()
