"""The web editor in headless Chromium against a real uvicorn server: edit, preview, publish."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.orchestrator.app import create_app
from services.orchestrator.settings import Settings
from shared.config import DatabaseSettings, KafkaSettings
from tests.channel_harness import free_socket, serve_app

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
ADMIN = {"Authorization": "Bearer dev-admin-key"}

pytestmark = pytest.mark.browser
#: Screenshots of every page the browser tests open (git-ignored), kept for review after a run.
ARTIFACTS = Path(os.environ.get("CADENCIA_TEST_ARTIFACTS", "test-artifacts"))


async def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000  # a rendered page, not an empty canvas
    return path


@pytest.fixture
async def server(kafka_settings: KafkaSettings, tmp_path: Path) -> AsyncIterator[str]:
    sock = free_socket()
    settings = Settings(kafka=kafka_settings, database=DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path}/o.db"))
    app = create_app(settings)
    async with app.router.lifespan_context(app), serve_app(app, sock):
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


async def test_edit_preview_publish_in_the_browser(server: str) -> None:
    # Missing Chromium is a failure, not a skip: CI installs it (make deps).
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: apt-get install -y chromium"
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = await browser.new_page()
            await page.goto(f"{server}/templates")
            assert await page.get_attribute("html", "lang") == "en"
            await page.fill("#api-key", "dev-admin-key")
            await page.click("#login button")
            item = page.locator('#template-list button[data-key="reminder_early"][data-channel="sms"]'
                                '[data-locale="es-MX"][data-variant="A"]')
            await item.click()
            await page.wait_for_function("document.querySelector('#segments').textContent.includes('segment')")
            # The shipped reminder is GSM-7 in 2 segments, and the cost view prices it.
            assert "2 segments · GSM-7" in (await page.text_content("#segments") or "")
            await page.wait_for_function(
                "document.querySelector('#cost-line').textContent.includes('per 10,000 sends')")
            assert "0.1048 USD per send" in (await page.text_content("#cost-line") or "")
            assert await page.is_hidden("#rewrite")  # already GSM-7: nothing cheaper to offer
            await screenshot(page, "editor-en-cost")

            body = "{{ creditor.name }}: hola {{ debtor | first_name }}, tu saldo es {{ account.balance | money }}."
            await page.fill("#f-body", body)
            await page.wait_for_function(
                "document.querySelector('#preview [data-field=body]')?.textContent.includes('tu saldo es $1,234.50')"
            )
            await page.wait_for_function("document.querySelector('#segments').textContent.startsWith('1 segment ')")
            assert "UCS-2" in (await page.text_content("#segments") or "")  # the sample "María" has an í
            # ...so the editor offers the GSM-7 rewrite; taking it makes the message GSM-7.
            await page.wait_for_selector("#rewrite:not([hidden])")
            assert "GSM-7 rewrite: 1 segment" in (await page.text_content("#rewrite-line") or "")
            await screenshot(page, "editor-en-rewrite-offer")
            await page.click("#use-rewrite")
            await page.wait_for_function("document.querySelector('#segments').textContent.includes('GSM-7')")
            assert "| gsm7" in await page.input_value("#f-body")
            body = await page.input_value("#f-body")

            await page.click("#save-publish")
            await page.wait_for_function("document.querySelector('#status').textContent.startsWith('Published')")
        finally:
            await browser.close()

    async with httpx.AsyncClient(base_url=server, headers=ADMIN) as client:
        items = (await client.get("/v1/templates")).json()["items"]
        live = next(i for i in items if (i["key"], i["channel"], i["locale"], i["variant"])
                    == ("reminder_early", "sms", "es-MX", "A"))
        version = (await client.get(f"/v1/templates/reminder_early/versions/{live['published_version']}")).json()
    assert version["content"]["body"] == body and version["live"]
    assert live["published_version"] == live["latest_version"] > 4


OLD_ES_CO = ("{{ debtor | first_name }}, {{ creditor.name }} te recuerda el pago de {{ account.balance | money }} "
             "con vencimiento el {{ account.due_date | date }}. Autorizado, paga: {{ account | payment_link }} "
             "Responde BAJA para no recibir más SMS")


async def test_the_editor_in_spanish_remembers_the_language_prices_sms_and_shows_who_published(server: str) -> None:
    assert os.path.exists(CHROMIUM), f"{CHROMIUM} is missing: apt-get install -y chromium"
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = await browser.new_page()
            await page.goto(f"{server}/templates")
            assert await page.get_attribute("html", "lang") == "en"
            # Chosen in the page...
            await page.select_option("#lang", "es")
            await page.wait_for_function("document.documentElement.lang === 'es'")
            assert await page.text_content("#save-publish") == "Guardar y publicar"
            # ...and remembered: the plain address comes back in Spanish.
            await page.goto(f"{server}/templates")
            assert await page.get_attribute("html", "lang") == "es"
            assert await page.text_content("#list-title") == "Plantillas"

            await page.fill("#api-key", "dev-admin-key")
            await page.click("#login button")
            await page.click('#template-list button[data-key="reminder_early"][data-channel="sms"]'
                             '[data-locale="es-CO"][data-variant="A"]')
            await page.wait_for_function("document.querySelector('#cost-line').textContent.includes('por envío')")
            assert "0,0700 USD por envío · 700,00 USD por 10.000 envíos" in (await page.text_content("#cost-line")
                                                                            or "")
            assert "2 segmentos · GSM-7" in (await page.text_content("#segments") or "")
            await screenshot(page, "editor-es-cost")

            # The body as it shipped before: 3 UCS-2 segments, and the GSM-7 rewrite offered in Spanish.
            await page.fill("#f-body", OLD_ES_CO)
            await page.wait_for_function("document.querySelector('#segments').textContent.startsWith('3 segmentos')")
            await page.wait_for_selector("#rewrite:not([hidden])")
            assert "0,1050 USD por envío" in (await page.text_content("#cost-line") or "")
            rewrite = await page.text_content("#rewrite-line") or ""
            assert rewrite.startswith("Versión GSM-7: 2 segmentos") and "700,00 USD por 10.000 envíos" in rewrite
            await screenshot(page, "editor-es-rewrite-offer")
            await page.click("#use-rewrite")
            await page.wait_for_function("document.querySelector('#segments').textContent.startsWith('2 segmentos')")
            await page.click("#save-publish")
            await page.wait_for_function("document.querySelector('#status').textContent.startsWith('Publicada')")
            # The history says who: the key's name on the version and in the change log.
            await page.wait_for_function("document.querySelector('#changes').textContent.includes('admin publicó')")
            assert (await page.text_content("#history tbody tr:first-child td.by")) == "admin"
            await screenshot(page, "editor-es-history")

            await page.select_option("#lang", "en")
            await page.wait_for_function("document.documentElement.lang === 'en'")
            assert await page.text_content("#list-title") == "Templates"
        finally:
            await browser.close()
