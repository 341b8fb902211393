"""The demo's whole loop on the dashboard, in Debian's chromium: every chart drawn from the demo's data,
a campaign paused and resumed from the page, and a request found and its timeline opened.

Real parts: the orchestrator, the SMS and email services and the sandbox over HTTP, the embedded
broker. The orchestrator's clock runs at real speed from a weekday's lawful midday, so the law allows
the demo's contacts whatever time the suite runs. Screenshots are kept in ``test-artifacts/``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

import services.sms.app as sms_app
import services.sms.settings as sms_settings
from services.orchestrator.app import create_app
from services.orchestrator.settings import Settings
from services.sandbox.testing import running_sandbox
from shared.bus import EventProducer
from shared.config import DatabaseSettings, KafkaSettings
from shared.events import Topics
from tests.browser import ARGS, CHROMIUM, screenshot_path
from tests.channel_harness import free_socket, running_service, serve_app, service_settings
from tests.email.harness import Email, email_settings_for
from tests.helpers import wait_for
from tests.orchestrator.conftest import request_event
from tests.templates.test_editor_browser import server  # noqa: F401 - fixture
from tooling.demo import demo_follow_ups, demo_requests

pytestmark = pytest.mark.browser
KEY = "dev-admin-key"
ADMIN = {"Authorization": f"Bearer {KEY}"}
#: Every stage the dashboard shows, each of which the demo must produce.
STAGES = ("requested", "dispatched", "delivered", "failed", "responded", "opted_out", "deferred", "rejected",
          "promised", "paid")
CHARTS = [f"{grain}-{metric}" for grain in "mh" for metric in
          ("requested", "dispatched", "delivered", "failed", "responded", "opted_out")] + [
    "funnel", "deferrals", "rejections", "failures", "responses", "channels",
    "b-campaign", "b-jurisdiction", "b-segment", "b-variant"]


@pytest.fixture(autouse=True)
def _logging_left_alone() -> Iterator[None]:
    # The services started here configure stdlib logging; later tests expect it as they found it.
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    loggers = {name: (lg.level, lg.disabled, lg.propagate, list(lg.handlers))
               for name, lg in logging.root.manager.loggerDict.items() if isinstance(lg, logging.Logger)}
    yield
    logging.disable(logging.NOTSET)
    root.setLevel(level)
    root.handlers[:] = handlers
    for name, lg in logging.root.manager.loggerDict.items():
        if isinstance(lg, logging.Logger):
            lg.level, lg.disabled, lg.propagate, lg.handlers[:] = loggers.get(name, (logging.NOTSET, False, True, []))


class SMS:
    Settings = sms_settings.Settings
    create_app = staticmethod(sms_app.create_app)


def lawful_midday() -> datetime:
    """The next Tuesday–Thursday at 17:00 UTC (11:00–14:00 across the demo's markets), off the year-end holidays."""
    day = datetime.now(UTC).replace(hour=17, minute=0, second=0, microsecond=0) + timedelta(days=1)
    while day.weekday() not in (1, 2, 3) or (day.month, day.day) >= (12, 20) or (day.month, day.day) <= (1, 7):
        day += timedelta(days=1)
    return day


def running_clock(start: datetime) -> Callable[[], datetime]:
    origin = time.monotonic()
    return lambda: start + timedelta(seconds=time.monotonic() - origin)


@dataclass
class Demo:
    url: str
    http: httpx.AsyncClient
    topics: Topics
    producer: EventProducer
    requests: list[Any]


@pytest.fixture
async def demo(kafka_settings: KafkaSettings, tmp_path: Path) -> AsyncIterator[Demo]:
    clock = running_clock(lawful_midday())
    prefix = kafka_settings.topic_prefix
    async with AsyncExitStack() as stack:
        sandbox = await stack.enter_async_context(running_sandbox())
        sock = free_socket()
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        settings = Settings(kafka=kafka_settings, database=DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path}/o.db"),
                            consumer_group=f"{prefix}orchestrator", scheduler_interval=0.2)
        app = create_app(settings, clock=clock)
        await stack.enter_async_context(app.router.lifespan_context(app))
        await stack.enter_async_context(serve_app(app, sock))

        sms_sock, email_sock = free_socket(), free_socket()
        sms_port, email_port = sms_sock.getsockname()[1], email_sock.getsockname()[1]
        sms_sock.close()
        email_sock.close()
        sms = service_settings(SMS, kafka_settings, f"sqlite+aiosqlite:///{tmp_path}/sms.db", sandbox, sms_port,
                               group=f"{prefix}sms").model_copy(update={"orchestrator_url": url})
        email = email_settings_for(kafka_settings, f"sqlite+aiosqlite:///{tmp_path}/email.db", sandbox, email_port,
                                   group=f"{prefix}email").model_copy(update={"orchestrator_url": url})
        await sandbox.set_inbound_urls(sms=f"{sms.public_url}/webhooks/twilio/inbound")
        await sandbox.set_sendgrid_webhook(f"{email.public_url}/webhooks/sendgrid/events")
        await stack.enter_async_context(running_service(SMS, sms))
        await stack.enter_async_context(running_service(Email, email))

        producer = EventProducer(kafka_settings, client_id="demo")
        await producer.start()
        stack.push_async_callback(producer.stop)
        topics = Topics(prefix)
        requests = demo_requests(40, now=clock())
        await producer.publish_many([(topics.contact_requests, e) for e in requests])
        http = await stack.enter_async_context(httpx.AsyncClient(base_url=url, headers=ADMIN))
        yield Demo(url, http, topics, producer, requests)


@pytest.mark.e2e
@pytest.mark.timeout(300)
async def test_the_demo_fills_every_chart_pause_and_resume_show_and_search_opens_a_timeline(demo: Demo) -> None:
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: apt-get install -y chromium"
    from playwright.async_api import async_playwright

    async def stats() -> dict[str, Any]:
        return dict((await demo.http.get("/v1/stats?fresh=true")).json())

    async def dispatched() -> bool:
        return (await stats())["totals"].get("delivered", 0) >= 5

    await wait_for(dispatched, timeout=60, what="the first contacts delivered")
    # What the backends report a little later (make run sends these 20 s after the portfolio).
    await demo.producer.publish_many([(demo.topics.account_events, e) for e in demo_follow_ups(demo.requests)])

    async def every_stage() -> dict[str, Any] | None:
        s = await stats()
        return s if all(s["totals"].get(stage) for stage in STAGES) else None

    await wait_for(every_stage, timeout=90, interval=0.5, what="every stage of the loop counted")

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1400, "height": 1000})
            await page.goto(f"{demo.url}/dashboard")
            await page.fill("#api-key", KEY)
            await page.click("#key-form button")
            await page.wait_for_function("Number(document.body.dataset.loaded || 0) >= 1")
            assert await page.get_attribute('nav.app-nav a[href="/dashboard"]', "aria-current") == "page"
            for chart in CHARTS:
                points = await page.get_attribute(f"#{chart}", "data-points")
                assert points is not None and int(points) > 0, f"chart {chart} has no data"
            assert int(await page.text_content("#k-requested") or 0) >= 40
            await page.screenshot(path=screenshot_path("dashboard"), full_page=True)

            # Pause a campaign from the page: it shows, and a new contact of that campaign is held.
            await page.select_option("#pause-scope", "campaign")
            await page.fill("#pause-key", "nov-reminders")
            await page.fill("#pause-reason", "legal review of the wording")
            await page.click("#pause-form button")
            await page.wait_for_selector('#pauses li[data-key="nov-reminders"]')
            assert await page.is_visible("#pause-banner")
            first = demo.requests[0]  # a new debtor of the campaign, so nothing but the pause holds it back
            data = first.data.model_copy(update={
                "debtor": first.data.debtor.model_copy(update={"id": "demo-held-0001", "phone": "+525512345678"}),
                "account": first.data.account.model_copy(update={"id": "acct-held-0001"})})
            held = first.model_copy(update={"id": "held-by-the-pause", "subject": "demo-held-0001", "data": data})
            await demo.producer.publish(demo.topics.contact_requests, held)

            async def status(request_id: str) -> str | None:
                r = await demo.http.get(f"/v1/contact-requests/{request_id}")
                return r.json()["status"] if r.status_code == 200 else None

            await wait_for(lambda: _is(status(held.id), "deferred"), timeout=30, what="the paused contact deferred")
            reason = (await demo.http.get(f"/v1/contact-requests/{held.id}")).json()["reason"]
            assert reason == "paused by ops: campaign nov-reminders (legal review of the wording)"
            # the new contact, and any fallback of the campaign's earlier contacts decided since
            await page.wait_for_function("Number(document.querySelector('#k-held').textContent) >= 1")
            banner = await page.text_content("#pause-banner") or ""
            assert "1 pause(s) active" in banner and "contacts held" in banner
            await page.screenshot(path=screenshot_path("dashboard-paused"), full_page=True)

            await page.click('#pauses li[data-key="nov-reminders"] button')
            await page.wait_for_function("!document.querySelector('#pauses li')")
            assert not await page.is_visible("#pause-banner")
            await wait_for(lambda: _is(status(held.id), "dispatched", "delivered"), timeout=30,
                           what="the resumed contact dispatched")
            await page.wait_for_function("document.querySelector('#k-held').textContent === '0'")
            await page.screenshot(path=screenshot_path("dashboard-resumed"), full_page=True)

            # Request search: a debtor's requests, then the timeline one click away.
            opted_out = demo.requests[0].data.debtor.id  # the demo's first debtor answers STOP
            await page.click('nav.app-nav a[href="/requests"]')
            await page.wait_for_selector("#search")
            await page.fill("#q-debtor", opted_out)
            await page.click("#search button")
            await page.wait_for_selector(f'#results tr[data-request="{demo.requests[0].id}"]')
            await page.click(f'#results tr[data-request="{demo.requests[0].id}"] a.request')
            await page.wait_for_selector("#timeline li")
            timeline = await page.text_content("#timeline") or ""
            assert "dispatched" in timeline and "responded" in timeline and "opt_out" in timeline
            assert opted_out in (await page.text_content("#tl-summary") or "")
            await page.screenshot(path=screenshot_path("requests-timeline"), full_page=True)

            # The editor shares the navigation.
            await page.click('nav.app-nav a[href="/templates"]')
            await page.wait_for_selector("#template-list")
            assert await page.get_attribute('nav.app-nav a[href="/templates"]', "aria-current") == "page"
            await page.screenshot(path=screenshot_path("templates"))
        finally:
            await browser.close()


async def _is(value: Any, *expected: str) -> bool:
    return await value in expected


async def test_the_dashboard_shows_the_figures_behind_a_key(server: str) -> None:  # noqa: F811
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: apt-get install -y chromium"
    from playwright.async_api import async_playwright

    event = request_event("deb-dash", channel="sms", template="reminder_early")
    async with httpx.AsyncClient(base_url=server, headers=ADMIN) as client:
        answer = await client.post("/v1/contact-requests", json=event.model_dump(mode="json"))
        assert answer.status_code == 202  # decided (here rejected: no due date for the template)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = await browser.new_page()
            await page.goto(f"{server}/dashboard")
            assert "Enter an API key" in (await page.text_content("#error") or "")
            await page.fill("#api-key", "dev-admin-key")
            await page.click("#key-form button")
            await page.wait_for_function("document.querySelector('#k-requested').textContent === '1'")
            await page.screenshot(path=screenshot_path("dashboard-one-request"), full_page=True)
        finally:
            await browser.close()
