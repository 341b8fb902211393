"""Settings sources, production refusal of development secrets, API keys and problem+json."""

from __future__ import annotations

from typing import ClassVar

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, ValidationError
from pydantic_settings import SettingsConfigDict

from shared.app import build_app
from shared.config import ServiceSettings, TwilioSettings
from shared.http import EditorDep, ViewerDep


class DemoSettings(ServiceSettings):
    service_name: ClassVar[str] = "demo"
    model_config = SettingsConfigDict(env_prefix="CADENCIA_DEMO_", env_nested_delimiter="__", extra="ignore")
    twilio: TwilioSettings = TwilioSettings()


def test_conventional_names_and_service_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka-a:9092")
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://db/shared")
    monkeypatch.setenv("DEMO_DATABASE_URL", "postgresql+asyncpg://db/demo")
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "1" * 32)
    monkeypatch.setenv("CADENCIA_DEMO_KAFKA__PARTITIONS", "12")
    s = DemoSettings()
    assert s.kafka.bootstrap_servers == "kafka-a:9092"
    assert s.kafka.partitions == 12
    assert s.database.url == "postgresql+asyncpg://db/demo"
    assert s.twilio.account_sid == "AC" + "1" * 32


def test_defaults_are_local(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "CADENCIA_ENV", "CADENCIA_API_KEYS"):
        monkeypatch.delenv(name, raising=False)
    s = DemoSettings()
    assert s.database.url == "sqlite+aiosqlite:///./var/demo.db"
    assert s.role_by_key() == {"dev-admin-key": "admin"}


def test_production_refuses_development_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CADENCIA_ENV", "production")
    with pytest.raises(ValidationError, match="CADENCIA_API_KEYS.*TWILIO_AUTH_TOKEN"):
        DemoSettings()
    monkeypatch.setenv("CADENCIA_API_KEYS", "admin:s3cret-admin,viewer:s3cret-view")
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "real-token")
    assert DemoSettings().env == "production"


class Body(BaseModel):
    amount: int


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> FastAPI:
    monkeypatch.setenv("CADENCIA_API_KEYS", "viewer:v-key,editor:e-key")
    app = build_app(DemoSettings(), "demo")

    @app.get("/read")
    async def read(role: ViewerDep) -> dict[str, str]:
        return {"role": role}

    @app.post("/write")
    async def write(body: Body, role: EditorDep) -> dict[str, int]:
        return {"amount": body.amount}

    return app


async def test_roles_and_problem_bodies(app: FastAPI) -> None:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        r = await client.get("/read")
        assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
        assert r.json()["title"] == "Unauthorized"
        assert (await client.get("/read", headers={"Authorization": "Bearer nope"})).status_code == 401
        assert (await client.get("/read", headers={"Authorization": "Bearer v-key"})).json() == {"role": "viewer"}
        r = await client.post("/write", json={"amount": 1}, headers={"Authorization": "Bearer v-key"})
        assert r.status_code == 403 and r.json()["detail"] == "role editor required"
        r = await client.post("/write", json={"amount": "x"}, headers={"Authorization": "Bearer e-key"})
        assert r.status_code == 422 and r.headers["content-type"] == "application/problem+json"
        assert r.json()["errors"][0]["field"] == "amount"
        r = await client.post("/write", content=b"x" * 2_000_000, headers={"Authorization": "Bearer e-key"})
        assert r.status_code == 413
        assert (await client.get("/health")).json()["status"] == "ok"
        assert (await client.get("/ready")).status_code == 200
        assert (await client.get("/missing")).headers["content-type"] == "application/problem+json"
