"""The store and API against a real database (SQLite and PostgreSQL) and the real broker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.orchestrator.app import create_app
from services.orchestrator.settings import Settings
from services.orchestrator.templates import template_store
from shared.config import DatabaseSettings, KafkaSettings
from shared.events.contracts import TemplatePublishedEvent
from shared.events.topics import Topics
from shared.templates import render_dispatch
from shared.templates.cache import TemplateCache
from tests.helpers import TopicReader, wait_for

ADMIN = {"Authorization": "Bearer dev-admin-key"}
VIEWER = {"Authorization": "Bearer viewer-key"}
BODY = ("{{ creditor.name }}: hola {{ debtor | first_name }}, saldo {{ account.balance | money }}. Autorizado. "
        "Responde BAJA")


@pytest.fixture
async def orchestrator(
    kafka_settings: KafkaSettings, database_url: str
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    settings = Settings(
        kafka=kafka_settings, database=DatabaseSettings(url=database_url, pool_size=5),
        api_keys="admin:dev-admin-key,viewer:viewer-key",  # type: ignore[arg-type]
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://orchestrator") as client:
            yield app, client


async def test_seeded_store_api_publish_rollback_and_cache(
    orchestrator: tuple[FastAPI, httpx.AsyncClient], kafka_settings: KafkaSettings
) -> None:
    app, client = orchestrator
    listing = (await client.get("/v1/templates", headers=VIEWER)).json()["items"]
    combos = {(i["key"], i["channel"], i["locale"]) for i in listing}
    for key in ("reminder_early", "reminder_late", "reminder_residual", "opt_out_confirmation",
                "promise_confirmation", "cease_notice", "dispute_ack"):
        for channel in ("sms", "email", "whatsapp", "voice"):
            for locale in ("es-MX", "es-CO", "en-US"):
                assert (key, channel, locale) in combos
    assert all(i["published_version"] == i["latest_version"] for i in listing)

    # Roles: a viewer reads, only an editor writes; no key at all is refused.
    draft = {"channel": "sms", "locale": "es-CO", "variant": "A", "content": {"body": BODY}}
    assert (await client.post("/v1/templates/greeting/versions", json=draft, headers=VIEWER)).status_code == 403
    assert (await client.get("/v1/templates")).status_code == 401

    # Syntax errors refuse the draft with every finding.
    bad = {**draft, "content": {"body": "{{ creditor.name "}}
    refused = await client.post("/v1/templates/greeting/versions", json=bad, headers=ADMIN)
    assert refused.status_code == 422 and refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["findings"][0]["code"] == "syntax"

    created = (await client.post("/v1/templates/greeting/versions", json=draft, headers=ADMIN)).json()
    assert created["version"] == 1 and created["publishable"]
    v2 = {**draft, "content": {"body": BODY + " (v2)"}}
    assert (await client.post("/v1/templates/greeting/versions", json=v2, headers=ADMIN)).json()["version"] == 2
    # Version numbers are per key, across combinations.
    en = {"channel": "sms", "locale": "en-US",
          "content": {"body": "{{ creditor.name }}, a debt collector: hi. Reply STOP to opt out"}}
    assert (await client.post("/v1/templates/greeting/versions", json=en, headers=ADMIN)).json()["version"] == 3

    # A lint error blocks publishing with a problem listing it.
    threat = {**draft, "content": {"body": BODY + " o la policía irá por usted"}}
    v4 = (await client.post("/v1/templates/greeting/versions", json=threat, headers=ADMIN)).json()
    assert v4["publishable"] is False
    blocked = await client.post("/v1/templates/greeting/versions/4/publish", headers=ADMIN)
    assert blocked.status_code == 422
    assert [f["code"] for f in blocked.json()["findings"]] == ["threatening_language"]

    preview = (await client.post("/v1/templates/greeting/preview", json=draft, headers=VIEWER)).json()
    assert preview["rendered"]["body"].startswith("Banco Ejemplo: hola María, saldo $ 1.234,50")
    assert preview["sms"]["segments"] == 1

    topics = Topics(kafka_settings.topic_prefix)
    cache = TemplateCache(kafka_settings, "http://orchestrator", "viewer-key",
                          transport=httpx.ASGITransport(app=app))
    await cache.start()
    try:
        async with TopicReader(kafka_settings, topics.templates) as reader:
            assert (await client.post("/v1/templates/greeting/versions/1/publish", headers=ADMIN)).status_code == 200
            assert (await client.post("/v1/templates/greeting/versions/2/publish", headers=ADMIN)).status_code == 200
            await wait_for(lambda: cache.published.get(("greeting", "sms", "es-CO", "A")) == 2, what="v2 reaches cache")
            events = await reader.wait_count("cadencia.template.published.v1", 2)
            mine = [e for e in events if isinstance(e, TemplatePublishedEvent) and e.data.key == "greeting"]
            assert mine[-1].subject == "greeting:sms:es-CO:A"
            assert [r.key for r in reader.raw if b"greeting" in r.key][-1] == b"greeting:sms:es-CO:A"

            # Rollback = publish the older version again.
            assert (await client.post("/v1/templates/greeting/versions/1/publish", headers=ADMIN)).status_code == 200
            await wait_for(lambda: cache.published.get(("greeting", "sms", "es-CO", "A")) == 1, what="rollback")

        # A dispatch pinned to v2 still renders v2, whatever is live now.
        data: dict[str, Any] = {"debtor": {"id": "d1", "name": "Ana Pérez"},
                                "account": {"id": "a1", "balance": "10", "currency": "COP"},
                                "creditor": {"name": "Banco Uno"}}
        assert render_dispatch(await cache.get("greeting", 2), data).body == (
            "Banco Uno: hola Ana, saldo $ 10,00. Autorizado. Responde BAJA (v2)"
        )
        assert render_dispatch(await cache.get("greeting", 1), data).body.endswith("Responde BAJA")
        # A version never seen on the topic comes from the HTTP API.
        fetched = await cache.get("greeting", 3)
        assert fetched.locale == "en-US" and cache.http_fetches == 1
    finally:
        await cache.stop()

    diff = (await client.get("/v1/templates/greeting/diff?from=1&to=2", headers=VIEWER)).json()
    assert list(diff["fields"]) == ["body"] and "+" in diff["fields"]["body"]
    detail = (await client.get("/v1/templates/greeting", headers=VIEWER)).json()
    assert [v["live"] for v in detail["versions"]] == [True, False, False, False]
    one = (await client.get("/v1/templates/greeting/versions/2", headers=VIEWER)).json()
    assert one["content"]["body"].endswith("(v2)")
    assert (await client.get("/v1/templates/greeting/versions/99", headers=VIEWER)).status_code == 404

    # The runtime API: resolve with locale fallback and the recorded variant.
    ctx = app.state.ctx
    async with ctx.db.transaction() as session:
        assert await template_store.key_exists(session, "reminder_early")
        assert not await template_store.key_exists(session, "nope")
        ref = await template_store.resolve(session, "greeting", "sms", "es-CO", "d1")
        assert ref is not None and (ref.version, ref.locale, ref.variant) == (1, "es-CO", "A")
        fallback = await template_store.resolve(session, "reminder_early", "sms", "es-PE", "d1")
        assert fallback is not None and fallback.locale == "es-MX" and fallback.variant in ("A", "B")
        again = await template_store.resolve(session, "reminder_early", "sms", "es-PE", "d1")
        assert again == fallback
        variants = {(await template_store.resolve(session, "reminder_early", "sms", "es-MX", f"d{i}")).variant  # type: ignore[union-attr]
                    for i in range(40)}
        assert variants == {"A", "B"}
        row = await template_store.get_version(session, ref.key, ref.version)
        assert row is not None and row.as_published().content.body == BODY


@pytest.mark.parametrize(
    ("balance", "currency", "locale", "expected"),
    [("1234.50", "COP", "es-CO", "1.234,50"), ("99.90", "COP", "es-CO", "99,90"),
     ("150000", "CLP", "es-CL", "150.000"), ("1234.5", "USD", "en-US", "1,234.50")],
)
async def test_preview_states_the_exact_amount_owed(
    orchestrator: tuple[FastAPI, httpx.AsyncClient], balance: str, currency: str, locale: str, expected: str
) -> None:
    _, client = orchestrator
    body = {"channel": "sms", "locale": locale, "content": {"body": "Saldo: {{ account.balance | money }}."},
            "sample": {"account": {"id": "a1", "balance": balance, "currency": currency}}}
    preview = (await client.post("/v1/templates/amount/preview", json=body, headers=VIEWER)).json()
    rendered = preview["rendered"]["body"]
    assert rendered.startswith("Saldo: ") and rendered.endswith(f"{expected}."), rendered
    assert rendered.removeprefix("Saldo: ").rstrip(".").lstrip("$ ") == expected  # nothing rounded or added


async def test_preview_refuses_an_amount_finer_than_the_currency_allows(
    orchestrator: tuple[FastAPI, httpx.AsyncClient]
) -> None:
    _, client = orchestrator
    body = {"channel": "sms", "locale": "es-CO", "content": {"body": "Saldo: {{ account.balance | money }}."},
            "sample": {"account": {"id": "a1", "balance": "99.901", "currency": "COP"}}}
    preview = (await client.post("/v1/templates/amount/preview", json=body, headers=VIEWER)).json()
    assert preview["rendered"] is None or "99,90" not in str(preview["rendered"])
    assert any("more decimals" in f["message"] for f in preview["findings"]), preview["findings"]
