"""The web editor in headless Chromium against a real uvicorn server: edit, preview, publish."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from services.orchestrator.app import create_app
from services.orchestrator.settings import Settings
from shared.config import DatabaseSettings, KafkaSettings
from tests.helpers import wait_for

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
ADMIN = {"Authorization": "Bearer dev-admin-key"}

pytestmark = pytest.mark.browser


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def server(kafka_settings: KafkaSettings, tmp_path: Path) -> AsyncIterator[str]:
    port = free_port()
    settings = Settings(kafka=kafka_settings, database=DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path}/o.db"))
    config = uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    uv = uvicorn.Server(config)
    task = asyncio.create_task(uv.serve())
    await wait_for(lambda: uv.started, timeout=60, what="uvicorn started")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        uv.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task


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
            assert "3 segments" in (await page.text_content("#segments") or "")

            body = "{{ creditor.name }}: hola {{ debtor | first_name }}, tu saldo es {{ account.balance | money }}."
            await page.fill("#f-body", body)
            await page.wait_for_function(
                "document.querySelector('#preview [data-field=body]')?.textContent.includes('tu saldo es $1,234.50')"
            )
            await page.wait_for_function("document.querySelector('#segments').textContent.startsWith('1 segment ')")
            assert "UCS-2" in (await page.text_content("#segments") or "")  # the sample "María" has an í

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
