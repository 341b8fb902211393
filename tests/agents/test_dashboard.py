"""Agent outcomes on the dashboard and the request timeline, end to end: the orchestrator (its strategy
naming an agent queue for the late segment), the voice service and the sandbox over HTTP, the embedded
broker. One debtor is bridged to an agent and talks 95 s, another hangs up mid-script; the dashboard shows
the campaign's answered, connected and abandoned calls, its abandonment rate over 30 days and the talk
time, and the connected request's timeline its talk time, in Debian's chromium."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import yaml

from services.orchestrator.app import create_app
from services.orchestrator.runtime.strategy import DEFAULT_PATH
from services.orchestrator.settings import Settings
from services.sandbox.testing import SandboxHandle, running_sandbox
from shared.config import DatabaseSettings, KafkaSettings
from shared.events.contracts import Account, ContactRequested, ContactRequestedEvent, Debtor
from tests.browser import ARGS, CHROMIUM, screenshot_path
from tests.channel_harness import free_socket, running_service, serve_app
from tests.e2e.harness import SharedClock
from tests.helpers import fresh, wait_for
from tests.voice.test_voice import Voice, settings_for

pytestmark = [pytest.mark.e2e, pytest.mark.browser]
KEY = "dev-admin-key"
ADMIN = {"Authorization": f"Bearer {KEY}"}
MEXICO = ZoneInfo("America/Mexico_City")
CAMPAIGN = "late-calls"


def next_noon() -> datetime:
    now = datetime.now(MEXICO)
    noon = now.replace(hour=12, minute=0, second=0, microsecond=0)
    return (noon if noon > now else noon + timedelta(days=1)).astimezone(UTC)


def strategy(tmp_path: Path, agent: str) -> str:
    """The shipped strategy, its late segment's voice calls bridged to one always-open queue."""
    raw = yaml.safe_load(DEFAULT_PATH.read_text(encoding="utf-8"))
    raw["agent_queues"] = {"late-mx": {"dial": agent, "agents": 2, "wait_s": 20}}
    for segment in raw["segments"]:
        if segment["name"] == "late":
            segment["agent_queue"] = "late-mx"
    path = tmp_path / "strategy.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return str(path)


def late_call(phone: str) -> ContactRequestedEvent:
    debtor_id = f"deb-{uuid.uuid4().hex[:8]}"
    return ContactRequestedEvent(subject=debtor_id, source="tests", data=ContactRequested(
        debtor=Debtor(id=debtor_id, name="Lupita Hernández", locale="es-MX", jurisdiction="MX",
                      time_zone="America/Mexico_City", phone=phone),
        account=Account(id=f"acc-{debtor_id}", product="personal_loan", balance="1234.50", currency="MXN",
                        days_past_due=45, due_date=date(2026, 10, 1), payment_url="https://pay.example.com/x"),
        channel="voice", template="reminder_late", campaign_id=CAMPAIGN,
    ))


@dataclass
class System:
    url: str
    http: httpx.AsyncClient
    sandbox: SandboxHandle
    agent: str


@pytest.fixture
async def system(kafka_settings: KafkaSettings, tmp_path: Path) -> AsyncIterator[System]:
    clock = SharedClock(next_noon())
    prefix = kafka_settings.topic_prefix
    agent = f"+1555{fresh(10**7):07d}"
    async with AsyncExitStack() as stack:
        sandbox = await stack.enter_async_context(running_sandbox(clock=clock))
        sock = free_socket()
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        settings = Settings(kafka=kafka_settings, database=DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path}/o.db"),
                            consumer_group=f"{prefix}orchestrator", scheduler_interval=0.1, send_margin_s=10,
                            strategy_path=strategy(tmp_path, agent))
        app = create_app(settings, clock=clock)
        await stack.enter_async_context(app.router.lifespan_context(app))
        await stack.enter_async_context(serve_app(app, sock))
        voice = settings_for(kafka_settings, f"sqlite+aiosqlite:///{tmp_path}/voice.db", sandbox, f"{prefix}voice")
        await stack.enter_async_context(running_service(Voice, voice.model_copy(update={"orchestrator_url": url})))
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=url, headers=ADMIN))
        yield System(url, http, sandbox, agent)


@pytest.mark.timeout(240)
async def test_the_dashboard_and_the_timeline_show_connected_and_abandoned_calls_and_the_talk_time(
    system: System,
) -> None:
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: apt-get install -y chromium"
    from playwright.async_api import async_playwright

    await system.sandbox.set_scenario(system.agent, answer="human", talk_s=95)
    talks, hangs_up = (late_call(f"+5255{fresh(10**8):08d}") for _ in range(2))
    await system.sandbox.set_scenario(hangs_up.data.debtor.phone or "", answer="human", hangup_after_s=2)
    answer = await system.http.post("/v1/contact-requests",
                                    json={"requests": [r.model_dump(mode="json") for r in (talks, hangs_up)]})
    assert answer.status_code == 202, answer.text

    async def figures() -> dict[str, Any] | None:
        agents = (await system.http.get("/v1/stats?fresh=true")).json()["agents"]
        found = [c for c in agents["campaigns"] if c["campaign_id"] == CAMPAIGN]
        done = found and found[0]["agent_connected"] + found[0]["abandoned"] == 2 and found[0]["answered"] == 2
        return agents if done else None

    agents = await wait_for(figures, timeout=90, interval=0.5, what="the campaign's agent outcomes counted")
    [campaign] = [c for c in agents["campaigns"] if c["campaign_id"] == CAMPAIGN]
    assert (campaign["answered"], campaign["agent_connected"], campaign["abandoned"]) == (2, 1, 1)
    assert (campaign["abandoned_rate"], campaign["over_cap"], campaign["talk_time_s"]) == (0.5, True, 95)
    assert (await system.http.get(f"/v1/campaigns/{CAMPAIGN}/agent-calls")).json() == campaign
    [connected] = (await system.http.get(f"/v1/contact-requests/{talks.id}/agent-calls")).json()["items"]
    assert (connected["status"], connected["talk_time_s"]) == ("agent_connected", 95)
    [abandoned] = (await system.http.get(f"/v1/contact-requests/{hangs_up.id}/agent-calls")).json()["items"]
    assert (abandoned["status"], abandoned["talk_time_s"]) == ("abandoned", None)
    metrics = (await system.http.get("/metrics")).text
    assert f'cadencia_abandoned_rate_30d{{campaign="{CAMPAIGN}"}} 0.5' in metrics

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 1000})
            await page.goto(f"{system.url}/dashboard")
            await page.fill("#api-key", KEY)
            await page.click("#key-form button")
            row = f'#t-agents tr[data-campaign="{CAMPAIGN}"]'
            await page.wait_for_selector(row)
            cells = [await c.text_content() for c in await page.query_selector_all(f"{row} td")]
            assert cells == [CAMPAIGN, "2", "1", "1", "50.0%", "1:35", "1:35"]
            assert "over" in (await page.get_attribute(f"{row} td:nth-child(5)", "class") or "")
            assert await page.text_content("#a-rate") == "50.0%" and await page.text_content("#a-talk") == "1:35"
            await page.locator("#agents").screenshot(path=screenshot_path("dashboard-agents"))

            await page.goto(f"{system.url}/requests?id={talks.id}")
            await page.wait_for_selector('#timeline li[data-agent-call="agent_connected"]')
            entry = await page.text_content('#timeline li[data-agent-call="agent_connected"]') or ""
            assert "agent connected" in entry and "talk time 1:35" in entry
            attempts = await page.text_content("#attempts") or ""
            assert "talk time" in attempts and "1:35" in attempts
            await page.screenshot(path=screenshot_path("requests-timeline-agent"), full_page=True)
        finally:
            await browser.close()
