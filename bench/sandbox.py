"""How fast the provider sandbox answers Messages.json and delivers the status callbacks it owes.

Starts the sandbox (``cadencia serve sandbox``: uvicorn, one process) and an aiohttp callback receiver,
POSTs N Messages.json with ``StatusCallback`` from an aiohttp client with C requests in flight, waits
(bounded by a deadline) until every ``sent`` and ``delivered`` callback has arrived, and reports:

- API rate: Messages.json answered per second;
- end-to-end rate: messages per second until the last callback arrived (each message = 1 request served
  + 2 signed callbacks sent), and the total HTTP exchanges the sandbox handled per second.

    .venv/bin/python bench/sandbox.py --messages 3000 --concurrency 32
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.ports import free_port  # noqa: E402

SID = "AC00000000000000000000000000000000"
TOKEN = "dev-twilio-auth-token"


async def wait_ready(url: str, deadline: float) -> None:
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url + "/health") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("sandbox did not start")
            await asyncio.sleep(0.05)


async def run(
    messages: int, concurrency: int, speed: float, timeout: float, with_callbacks: bool = True
) -> dict[str, float]:
    sandbox_port, receiver_port = free_port(), free_port()
    env = {
        **os.environ,
        "TWILIO_ACCOUNT_SID": SID,
        "TWILIO_AUTH_TOKEN": TOKEN,
        "CADENCIA_SANDBOX_SPEED_FACTOR": str(speed),
        "CADENCIA_SANDBOX_LOG_LEVEL": "WARNING",
        "CADENCIA_SANDBOX_CALLBACK_CONCURRENCY": "64",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            *os.environ.get("BENCH_SANDBOX_CMD", "-m tooling.cli serve sandbox --port").split(),
            str(sandbox_port),
        ],
        cwd=ROOT,
        env=env,
    )
    received = 0
    all_in = asyncio.Event()
    expected = 2 * messages if with_callbacks else 0

    async def callback(request: web.Request) -> web.Response:
        nonlocal received
        await request.read()
        received += 1
        if received >= expected:
            all_in.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/status", callback)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", receiver_port).start()
    url = f"http://127.0.0.1:{sandbox_port}"
    try:
        await wait_ready(url, time.monotonic() + 20)
        auth = "Basic " + base64.b64encode(f"{SID}:{TOKEN}".encode()).decode()
        endpoint = f"{url}/2010-04-01/Accounts/{SID}/Messages.json"
        callback_url = f"http://127.0.0.1:{receiver_port}/status"
        queue = iter(range(messages))
        failures = 0

        async def worker(session: aiohttp.ClientSession) -> None:
            nonlocal failures
            for i in queue:
                form = {
                    "To": f"+52155{i % 10**6:06d}0000",
                    "From": "+15005550006",
                    "Body": f"Recordatorio {i}: su pago vence mañana",
                }
                if with_callbacks:
                    form["StatusCallback"] = callback_url
                async with session.post(endpoint, data=form, headers={"Authorization": auth}) as response:
                    await response.read()
                    if response.status != 201:
                        failures += 1

        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            started = time.perf_counter()
            await asyncio.gather(*(worker(session) for _ in range(concurrency)))
            api_done = time.perf_counter()
            try:
                if expected:
                    await asyncio.wait_for(all_in.wait(), timeout)
            except TimeoutError:
                pass
            finished = time.perf_counter()
    finally:
        await runner.cleanup()
        proc.terminate()
        proc.wait(timeout=20)
    total = finished - started
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "sandbox_cpu_s": children.ru_utime + children.ru_stime,
        "bench_cpu_s": own.ru_utime + own.ru_stime,
        "messages": messages,
        "failures": failures,
        "callbacks": received,
        "api_seconds": api_done - started,
        "api_rate": messages / (api_done - started),
        "e2e_seconds": total,
        "e2e_rate": messages / total,
        "http_exchanges_rate": (messages + received) / total,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--speed", type=float, default=1000.0, help="sandbox speed factor")
    parser.add_argument("--no-callbacks", action="store_true", help="measure the API alone")
    parser.add_argument("--timeout", type=float, default=60.0, help="deadline for the callbacks (s)")
    args = parser.parse_args()
    result = asyncio.run(run(args.messages, args.concurrency, args.speed, args.timeout, not args.no_callbacks))
    expected = 0 if args.no_callbacks else 2 * result["messages"]
    print(
        f"{result['messages']} Messages.json, {args.concurrency} in flight, speed x{args.speed:g}: "
        f"API {result['api_rate']:.0f} req/s ({result['api_seconds']:.2f} s, {result['failures']} non-201); "
        f"callbacks {result['callbacks']}/{expected}; "
        f"end to end {result['e2e_rate']:.0f} msg/s ({result['e2e_seconds']:.2f} s), "
        f"{result['http_exchanges_rate']:.0f} HTTP exchanges/s; CPU: sandbox {result['sandbox_cpu_s']:.2f} s, "
        f"bench client+receiver {result['bench_cpu_s']:.2f} s"
    )
    return 0 if result["failures"] == 0 and result["callbacks"] == expected else 1


if __name__ == "__main__":
    sys.exit(main())
