"""The self-service page in headless Chromium on a phone-sized screen: a promise and a plan, signed PDFs.

Screenshots and the downloaded agreements are kept in ``test-artifacts/selfservice/`` (git-ignored).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from services.orchestrator.app import create_app
from shared.config import KafkaSettings
from shared.templates import format_money
from tests.channel_harness import free_socket, serve_app
from tests.helpers import TopicReader, wait_for
from tests.orchestrator.conftest import EDITOR, FakeClock, make_settings, publish_templates, request_event
from tests.templates.test_editor_browser import ARGS, CHROMIUM
from tests.templates.test_editor_browser import ARTIFACTS as TEST_ARTIFACTS

pytestmark = pytest.mark.browser
ARTIFACTS = TEST_ARTIFACTS / "selfservice"
DISPATCHED = "cadencia.contact.dispatched.v1"
PROMISE = "cadencia.account.promise_made.v1"
#: 23:30 in New York: no contact is lawful, the page still answers.
NIGHT = datetime(2025, 3, 13, 3, 30, tzinfo=UTC)


@dataclass
class Server:
    url: str
    app: FastAPI
    clock: FakeClock


@pytest.fixture
async def server(kafka_settings: KafkaSettings, tmp_path: Path) -> AsyncIterator[Server]:
    sock, clock = free_socket(), FakeClock()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settings = make_settings(kafka_settings, f"sqlite+aiosqlite:///{tmp_path}/o.db", public_url=url)
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app), serve_app(app, sock):
        for key in ("reminder", "promise_confirmation"):
            await publish_templates(app, key)
        yield Server(url, app, clock)


async def test_a_debtor_promises_and_signs_a_plan_on_a_phone_and_downloads_the_agreements(
    server: Server, kafka_settings: KafkaSettings
) -> None:
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: apt-get install -y chromium"
    from playwright.async_api import async_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    topics = server.app.state.ctx.topics
    async with TopicReader(kafka_settings, topics.dispatch("sms"), topics.account_events) as reader, \
            httpx.AsyncClient(base_url=server.url) as http:
        links = {}
        for debtor_id, locale in (("deb-b1", "es-MX"), ("deb-b2", "en-US")):
            event = request_event(debtor_id, days_past_due=0, locale=locale)
            body = {"requests": [event.model_dump(mode="json")]}
            assert (await http.post("/v1/contact-requests", json=body, headers=EDITOR)).status_code == 202
            [sent] = await wait_for(
                lambda e=event: [d for d in reader.of_type(DISPATCHED) if d.data.request_id == e.id])
            links[debtor_id] = sent.data.variables["account"]["self_service_url"]
        server.clock.now = NIGHT

        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                context = await browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,
                                                    accept_downloads=True)
                page = await context.new_page()
                external: list[str] = []
                page.on("request", lambda r: None if r.url.startswith(server.url) else external.append(r.url))

                # a promise, in Spanish
                await page.goto(links["deb-b1"])
                assert await page.get_attribute("html", "lang") == "es"
                balance = format_money(Decimal("1234.50"), "USD", "es-MX")
                assert (await page.text_content("#balance")) == balance
                unlabelled = await page.evaluate(
                    "[...document.querySelectorAll('input:not([type=hidden])')].filter(i => !i.labels.length).length")
                assert unlabelled == 0
                assert await page.evaluate("document.cookie") == ""
                await page.screenshot(path=str(ARTIFACTS / "page-es.png"), full_page=True)
                await page.fill("#date", "2025-03-20")
                await page.fill("#amount", "600")
                await page.click("#continue")
                await page.wait_for_selector("#confirm")
                await page.fill("#signed_name", "Ana Pérez")
                await page.check("#agree")
                await page.click("#confirm")
                await page.wait_for_selector("#done")
                await page.screenshot(path=str(ARTIFACTS / "done-es.png"), full_page=True)
                async with page.expect_download() as downloading:
                    await page.click("#download")
                download = await downloading.value
                promise_pdf = ARTIFACTS / "agreement-promise.pdf"
                await download.save_as(str(promise_pdf))
                assert promise_pdf.read_bytes().startswith(b"%PDF-1.4")
                assert b"Acuerdo de pago" in promise_pdf.read_bytes()

                # a payment plan, in English
                await page.goto(links["deb-b2"])
                assert await page.get_attribute("html", "lang") == "en"
                await page.check("#choice-plan")
                await page.check("#count-4")
                await page.fill("#first_date", "2025-03-25")
                await page.click("#continue")
                await page.wait_for_selector("#schedule")
                assert await page.locator("#schedule tbody tr").count() == 4
                await page.fill("#signed_name", "Ana Pérez")
                await page.click("#confirm")  # the box is not ticked: refused, with the reason
                await page.wait_for_selector("#errors")
                assert "Tick the box" in (await page.text_content("#errors") or "")
                await page.fill("#signed_name", "ana perez")
                await page.check("#agree")
                await page.click("#confirm")
                await page.wait_for_selector("#done")
                await page.screenshot(path=str(ARTIFACTS / "done-plan-en.png"), full_page=True)
                async with page.expect_download() as downloading:
                    await page.click("#download")
                plan_pdf = ARTIFACTS / "agreement-plan.pdf"
                await (await downloading.value).save_as(str(plan_pdf))
                assert b"Payment plan in 4 instalments" in plan_pdf.read_bytes()
                assert external == []  # no tracker, font or script from anywhere else
            finally:
                await browser.close()

        promises = await reader.wait_count(PROMISE, 5)
        mine = sorted((p.data.debtor_id, p.data.instalment, p.data.due_date, p.data.amount) for p in promises)
        assert mine[0] == ("deb-b1", 1, date(2025, 3, 20), Decimal("600"))
        assert [m[1:3] for m in mine[1:]] == [(1, date(2025, 3, 25)), (2, date(2025, 4, 24)), (3, date(2025, 5, 24)),
                                              (4, date(2025, 6, 23))]
        assert sum(m[3] for m in mine[1:]) == Decimal("1234.50")

        # collection is paused: the next reminder waits for the promise
        paused = request_event("deb-b1", days_past_due=0)
        result = (await http.post("/v1/contact-requests", json={"requests": [paused.model_dump(mode="json")]},
                                  headers=EDITOR)).json()["results"][0]
        assert result["status"] == "deferred" and "core.promise_to_pay" in result["reason"]
