"""Which HTTP client the channel services send through: measured, not guessed (docs/internals.md: batches).

Serves a one-process FastAPI stand-in for Twilio's ``Messages.json`` (uvicorn, a subprocess) and
creates N messages with C in flight through each candidate:

- ``twilio-async``: the official ``twilio`` client, ``messages.create_async`` on ``AsyncTwilioHttpClient``;
- ``aiohttp``: ``shared.providers.twilio.TwilioMessages`` (one aiohttp session) — what SMS and WhatsApp use;
- ``httpx-aiohttp``: the same request through httpx with the ``httpx_aiohttp`` transport;
- ``httpx-native``: the same request on httpx's own transport.

    .venv/bin/python bench/http_clients.py --messages 3000 --concurrency 32
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.ports import free_port  # noqa: E402

SID = "AC00000000000000000000000000000000"
TOKEN = "dev-twilio-auth-token"


def stand_in() -> FastAPI:
    app = FastAPI()

    @app.post("/2010-04-01/Accounts/{account}/Messages.json")
    async def create(account: str, request: Request) -> Response:
        await request.body()
        body = orjson.dumps({
            "sid": f"SM{uuid.uuid4().hex}", "status": "queued", "to": "+5215512345678", "account_sid": account,
            "body": "", "from": "+15005550006", "api_version": "2010-04-01", "direction": "outbound-api",
        })
        return Response(body, status_code=201, media_type="application/json")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


async def drive(send: Callable[[int], Awaitable[object]], messages: int, concurrency: int) -> float:
    queue = iter(range(messages))

    async def worker() -> None:
        for n in queue:
            await send(n)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return messages / (time.perf_counter() - started)


async def bench_client(name: str, url: str, messages: int, concurrency: int) -> float:
    from httpx_aiohttp import AiohttpTransport

    from shared.config import TwilioSettings
    from shared.providers.twilio import TwilioMessages, classify_response

    settings = TwilioSettings(account_sid=SID, base_url=url)
    params = {"To": "+5215512345678", "From": "+15005550006", "Body": "Hola, recordatorio de pago",
              "StatusCallback": "http://127.0.0.1:1/webhooks/twilio/status"}
    if name == "twilio-async":
        from twilio.http.async_http_client import AsyncTwilioHttpClient
        from twilio.rest import Client

        http = AsyncTwilioHttpClient()
        client = Client(SID, TOKEN, http_client=http)
        client.api.base_url = url

        async def send(_: int) -> object:
            return await client.messages.create_async(
                to=params["To"], from_=params["From"], body=params["Body"], status_callback=params["StatusCallback"]
            )

        await drive(send, 50, concurrency)  # warm up
        try:
            return await drive(send, messages, concurrency)
        finally:
            await http.close()
    if name == "aiohttp":
        async with TwilioMessages(settings, max_connections=concurrency) as messages_api:

            async def send_ours(_: int) -> object:
                return await messages_api.create(params)

            await drive(send_ours, 50, concurrency)
            return await drive(send_ours, messages, concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    transport: httpx.AsyncBaseTransport = (
        AiohttpTransport(limits=limits) if name == "httpx-aiohttp" else httpx.AsyncHTTPTransport(limits=limits)
    )
    async with httpx.AsyncClient(transport=transport, auth=(SID, TOKEN)) as client:
        endpoint = f"{url}/2010-04-01/Accounts/{SID}/Messages.json"

        async def send_httpx(_: int) -> object:
            response = await client.post(endpoint, data=params)
            return classify_response(response.status_code, response.headers, response.content)

        await drive(send_httpx, 50, concurrency)
        return await drive(send_httpx, messages, concurrency)


async def main(messages: int, concurrency: int, rounds: int) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-c",
         "import uvicorn; from bench.pipeline import stand_in; "
         f"uvicorn.run(stand_in(), host='127.0.0.1', port={port}, log_level='warning', access_log=False)"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        deadline = time.monotonic() + 20
        async with httpx.AsyncClient() as probe:
            while True:
                try:
                    if (await probe.get(url + "/health")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError("stand-in did not start")
                await asyncio.sleep(0.05)
        print(f"{messages} Messages.json creates, {concurrency} in flight, {rounds} rounds (best and all, req/s)")
        for name in ("twilio-async", "aiohttp", "httpx-aiohttp", "httpx-native"):
            rates = [await bench_client(name, url, messages, concurrency) for _ in range(rounds)]
            print(f"  {name:14s} best {max(rates):7.0f}   " + " ".join(f"{r:.0f}" for r in rates))
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.messages, args.concurrency, args.rounds))
