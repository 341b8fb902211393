"""Fixtures: a sandbox and a webhook receiver, each served by uvicorn on a free loopback port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from twilio.request_validator import RequestValidator

from services.sandbox.testing import SandboxHandle, free_socket, running_sandbox, serve_app


@dataclass
class Received:
    method: str
    path: str
    url: str
    headers: dict[str, str]
    body: bytes
    form: dict[str, list[str]]

    def param(self, name: str) -> str | None:
        values = self.form.get(name)
        return values[0] if values else None


@dataclass
class Receiver:
    """Records every request; answers per path with a configured (status, body, content type)."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    replies: dict[str, tuple[int, str, str]] = field(default_factory=dict)

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    def reply(self, path: str, body: str, status: int = 200, content_type: str = "application/xml") -> None:
        self.replies[path] = (status, body, content_type)

    async def wait(self, path: str, count: int = 1, timeout: float = 15.0) -> list[Received]:
        from tests.helpers import wait_for

        await wait_for(lambda: len(self.at(path)) >= count, timeout, what=f"{count} requests to {path}")
        return self.at(path)

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        form: dict[str, list[str]] = {}
        if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            from urllib.parse import parse_qsl

            for key, value in parse_qsl(body.decode(), keep_blank_values=True):
                form.setdefault(key, []).append(value)
        elif request.method == "GET":
            for key, value in request.query_params.multi_items():
                form.setdefault(key, []).append(value)
        self.received.append(
            Received(request.method, request.url.path, str(request.url), dict(request.headers), body, form)
        )
        status, text, content_type = self.replies.get(request.url.path, (204, "", "text/plain"))
        return Response(text, status_code=status, media_type=content_type)


def twilio_valid(token: str, received: Received) -> bool:
    """Validate exactly as a receiver would with the official helper."""
    validator = RequestValidator(token)
    params: Any = {k: v[0] if len(v) == 1 else v for k, v in received.form.items()}
    if received.method == "GET":
        params = {}
    return bool(validator.validate(received.url, params, received.headers.get("x-twilio-signature", "")))


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rx = Receiver()
    app = Starlette(routes=[Route("/{path:path}", rx.handle, methods=["GET", "POST"])])
    sock = free_socket()
    rx.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    async with serve_app(app, sock):
        yield rx


@pytest.fixture
async def sandbox(receiver: Receiver) -> AsyncIterator[SandboxHandle]:
    async with running_sandbox(
        inbound={
            "sms": receiver.url + "/sms/inbound",
            "whatsapp": receiver.url + "/whatsapp/inbound",
            "voice": receiver.url + "/voice/inbound",
        },
        sendgrid_webhook_url=receiver.url + "/sendgrid/events",
    ) as handle:
        yield handle
