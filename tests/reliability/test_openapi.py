"""Every service's HTTP API, fuzzed through its own OpenAPI document (schemathesis).

For each service, every operation gets generated valid and invalid requests (``CADENCIA_FUZZ_EXAMPLES``
of each per operation; ``make soak`` raises it) over real HTTP, against the real broker, database and
sandbox. No answer may be a 5xx, use an undeclared status or content type, or break its declared
schema; an operation that declares the bearer key answers 401 with a problem body to no key and to a
wrong key. The counts of cases and findings are printed (``-s``) for the record.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

import services.sms.app
import services.sms.settings
import services.whatsapp.app
import services.whatsapp.settings
from services.orchestrator.app import create_app
from services.orchestrator.settings import Settings
from services.sandbox.testing import SandboxHandle
from shared.config import DatabaseSettings, KafkaSettings
from tests.channel_harness import free_port, free_socket, running_service, serve_app, service_settings
from tests.reliability.openapi_fuzz import EXAMPLES, FuzzReport, fuzz_service

# The orchestrator alone has ~46 operations: a few hundred requests, more under ``make soak``.
pytestmark = pytest.mark.timeout(600 + 60 * EXAMPLES)

KEY = "dev-admin-key"
#: Operations left out, and why: the sandbox's fault injection exists to make it answer 5xx.
SKIP = {"sandbox": frozenset({"PUT /sandbox/faults"})}


@asynccontextmanager
async def served(name: str, kafka: KafkaSettings, tmp_path: Path, sandbox: SandboxHandle) -> AsyncIterator[Any]:
    """``name``'s app, its lifespan running, served on a loopback port: ``(app, url)``."""
    database = f"sqlite+aiosqlite:///{tmp_path / name}.db"
    group = f"{kafka.topic_prefix}{name}"
    if name in ("sms", "whatsapp"):
        module = services.sms if name == "sms" else services.whatsapp
        settings = service_settings(module.settings, kafka, database, sandbox, free_port(), group=group)
        async with running_service(module.app, settings) as running:
            yield running.app, running.url
    elif name == "email":
        from tests.email.harness import Email, email_settings_for

        settings = email_settings_for(kafka, database, sandbox, free_port(), group=group)
        async with running_service(Email, settings) as running:
            yield running.app, running.url
    elif name == "voice":
        from tests.voice.test_voice import Voice, settings_for

        async with running_service(Voice, settings_for(kafka, database, sandbox, group)) as running:
            yield running.app, running.url
    elif name == "orchestrator":
        sock = free_socket()  # held from here: the start-up's own connections cannot be given its port
        port = sock.getsockname()[1]
        settings = Settings(kafka=kafka, database=DatabaseSettings(url=database, pool_size=5), env="test",
                            consumer_group=group, port=port, scheduler_interval=0.2)
        app = create_app(settings)
        async with app.router.lifespan_context(app), serve_app(app, sock):
            yield app, f"http://127.0.0.1:{port}"
    else:
        yield sandbox.app, sandbox.url


def off_machine(url: str) -> bool:
    """An absolute http(s) URL whose host is not this machine's loopback."""
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and (parts.hostname or "") not in ("127.0.0.1", "localhost", "::1")


def loopback_only(name: str, app: Any) -> list[str]:
    """URLs outside this machine a fuzzed request made the service call (must be none)."""
    if name == "sandbox":
        sandbox = app.state.sandbox
        urls = [entry["url"] for entry in sandbox.sender.log]
        urls += [sandbox.sendgrid_webhook_url or "", *(sandbox.inbound_urls.model_dump().values())]
        return [url for url in urls if off_machine(str(url))]
    return []


@pytest.mark.parametrize("name", ["sms", "whatsapp", "email", "voice", "sandbox", "orchestrator"])
async def test_no_generated_request_gets_a_5xx_a_schema_breaking_answer_or_in_without_its_key(
    name: str, kafka_settings: KafkaSettings, tmp_path: Path, sandbox: SandboxHandle,
) -> None:
    async with served(name, kafka_settings, tmp_path, sandbox) as (app, url):
        report: FuzzReport = await asyncio.to_thread(fuzz_service, name, app.openapi(), url, KEY,
                                                   skip=SKIP.get(name, frozenset()))
        outside = loopback_only(name, app)
    print(report.summary(), report.seconds.most_common(8))  # noqa: T201 - the figures of the run, for the record
    assert report.cases > 0
    assert not outside, outside
    assert not report.findings, report.summary()


async def test_an_instant_with_no_utc_equivalent_is_a_422_problem_not_a_500(
    kafka_settings: KafkaSettings, tmp_path: Path, sandbox: SandboxHandle,
) -> None:
    """Found by the fuzzing: ``0001-01-01T00:00:00+01:00`` overflowed converting to UTC inside the handler."""
    from tests.reliability.hostile import request_dict

    request = request_dict("deb-instant")
    request["data"]["not_before"] = "0001-01-01T00:00:00+01:00"
    async with served("orchestrator", kafka_settings, tmp_path, sandbox) as (_, url), \
            httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {KEY}"}) as http:
        answers = [
            await http.get("/v1/contact-requests", params={"since": "0001-01-01T00:00:00+01:00"}),
            await http.get("/v1/contact-requests", params={"until": "9999-12-31T23:59:59-01:00"}),
            await http.post("/v1/contact-requests", json={"requests": [request]}),
        ]
    for answer in answers:
        assert answer.status_code == 422, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert "out of range in UTC" in answer.text
