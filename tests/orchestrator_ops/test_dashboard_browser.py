"""The ops dashboard in headless Chromium: the figures load with a key, with a screenshot kept."""

from __future__ import annotations

import os

import httpx
import pytest

from tests.orchestrator.conftest import request_event
from tests.templates.test_editor_browser import ARGS, CHROMIUM, screenshot, server  # noqa: F401 - fixture

pytestmark = pytest.mark.browser
ADMIN = {"Authorization": "Bearer dev-admin-key"}


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
            await page.wait_for_function("document.querySelector('#k-requests').textContent === '1'")
            await screenshot(page, "dashboard")
        finally:
            await browser.close()
