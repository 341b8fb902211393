"""What the ops hooks (counters, pause check) cost the orchestrator's intake: the same requests with
and without them.

Both runs in this process, one after the other, each on a fresh SQLite database: the orchestrator
app (real broker), ``POST /v1/contact-requests`` in batches of 50 through ASGI, every request decided
and dispatched. The figure is the ratio of the two rates, measured in the same run; absolute rates
depend on the machine.

    .venv/bin/python bench/ops_counters.py --requests 1000
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.orchestrator.app import create_app  # noqa: E402
from services.orchestrator.ops import component as ops_component  # noqa: E402
from services.orchestrator.settings import Settings  # noqa: E402
from shared.bus.broker import EmbeddedBroker  # noqa: E402
from shared.config import DatabaseSettings, KafkaSettings  # noqa: E402
from shared.logging import configure_logging  # noqa: E402
from tooling.demo import demo_requests  # noqa: E402

#: Wednesday 15:00 UTC: lawful for the US debtors the requests name.
NOW = datetime(2025, 3, 12, 15, 0, tzinfo=UTC)
ADMIN = {"Authorization": "Bearer dev-admin-key"}
WITH_HOOKS = ops_component.OpsComponent.start


async def run(kafka: KafkaSettings, url: str, count: int, counters: bool) -> tuple[float, Counter[str]]:
    # without: the ops component installs no hooks, so the runtime keeps its no-op ones
    ops_component.OpsComponent.start = WITH_HOOKS if counters else _no_hooks  # type: ignore[method-assign]
    settings = Settings(kafka=kafka, database=DatabaseSettings(url=url), consumer_group=f"{kafka.topic_prefix}o")
    app = create_app(settings, clock=lambda: NOW)
    outcomes: Counter[str] = Counter()
    async with app.router.lifespan_context(app):
        assert (app.state.runtime.hooks.__class__.__name__ == "OpsHooks") == counters
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://o") as http:
            events = demo_requests(count, now=NOW)  # the demo's mix: dispatched, deferred, rejected
            started = time.perf_counter()
            for i in range(0, len(events), 50):
                body = {"requests": [e.model_dump(mode="json") for e in events[i:i + 50]]}
                answer = await http.post("/v1/contact-requests", json=body, headers=ADMIN)
                assert answer.status_code == 202
                outcomes.update(r["status"] for r in answer.json()["results"])
            return len(events) / (time.perf_counter() - started), outcomes


async def _no_hooks(self: object, *_: object) -> None:
    return None


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args()
    configure_logging("WARNING")
    tmp = Path(tempfile.mkdtemp(prefix="bench-ops-"))
    with EmbeddedBroker(log_path=str(tmp / "broker.log")) as broker:
        warm = KafkaSettings(bootstrap_servers=broker.bootstrap_servers, topic_prefix=f"w{uuid.uuid4().hex[:6]}.")
        await run(warm, f"sqlite+aiosqlite:///{tmp}/warm-up.db", 50, True)  # imports, caches, first connections
        rates, mixes = {}, {}
        for counters in (False, True):
            kafka = KafkaSettings(bootstrap_servers=broker.bootstrap_servers, topic_prefix=f"b{uuid.uuid4().hex[:6]}.")
            url = f"sqlite+aiosqlite:///{tmp}/o-{counters}.db"
            rates[counters], mixes[counters] = await run(kafka, url, args.requests, counters)
            print(f"{'with' if counters else 'without'} ops hooks: {rates[counters]:.0f} requests/s "
                  f"{dict(mixes[counters])}", flush=True)
        assert mixes[True] == mixes[False], "both runs must decide the same"
    print(f"with/without: {rates[True] / rates[False]:.2f}")


if __name__ == "__main__":
    asyncio.run(main())
