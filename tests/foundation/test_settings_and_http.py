"""Settings sources, production refusal of development secrets, API keys and problem+json."""

from __future__ import annotations

from typing import ClassVar

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from pydantic_settings import SettingsConfigDict

from services.sms.settings import Settings as SmsSettings
from shared.app import DirectRoute, ServiceApp, build_app
from shared.config import ServiceSettings, TwilioSettings, is_public_https
from shared.http import EditorDep, Problem, ViewerDep
from shared.tracing import current


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
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", "AC" + "1" * 32)
    with pytest.raises(ValidationError, match="TWILIO_API_BASE_URL"):
        DemoSettings()  # the sandbox is the development default
    monkeypatch.setenv("TWILIO_API_BASE_URL", "https://api.twilio.com")
    settings = DemoSettings()
    assert settings.env == "production"
    assert settings.migrate_on_start is False  # production migrates once, with `cadencia migrate`


@pytest.mark.parametrize(
    "url, public",
    [
        ("https://api.twilio.com", True),
        ("https://hooks.example.com/sms", True),
        ("http://api.twilio.com", False),
        ("http://127.0.0.1:8090", False),
        ("https://127.0.0.1:8443", False),
        ("https://localhost", False),
        ("https://0.0.0.0", False),
        ("https://[::1]:8001", False),
        ("", False),
    ],
)
def test_only_public_https_urls_are_production_urls(url: str, public: bool) -> None:
    assert is_public_https(url) is public


def test_production_channel_refuses_sandbox_loopback_and_the_development_orchestrator_key() -> None:
    real = {
        "env": "production", "api_keys": "admin:s3cret",
        "twilio": {"account_sid": "AC" + "1" * 32, "auth_token": "real", "base_url": "https://api.twilio.com"},
        "orchestrator_api_key": "viewer-s3cret", "public_url": "https://sms.example.com",
    }
    assert SmsSettings(**real).public_url == "https://sms.example.com"
    for field, value, variable in [
        ("orchestrator_api_key", "dev-admin-key", "CADENCIA_ORCHESTRATOR_API_KEY"),
        ("orchestrator_api_key", "", "CADENCIA_ORCHESTRATOR_API_KEY"),
        ("public_url", "", "CADENCIA_SMS_PUBLIC_URL"),
        ("public_url", "http://127.0.0.1:8001", "CADENCIA_SMS_PUBLIC_URL"),
        ("twilio", {**real["twilio"], "base_url": "http://127.0.0.1:8090"}, "TWILIO_API_BASE_URL"),  # type: ignore[dict-item]
    ]:
        with pytest.raises(ValidationError, match=variable):
            SmsSettings(**{**real, field: value})
    # Development keeps its zero-configuration defaults.
    local = SmsSettings(env="development")
    assert local.public_url == "http://127.0.0.1:8001" and local.migrate_on_start is True


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


def _callback_app(direct: bool) -> ServiceApp:
    """An app with one callback route (a ``DirectRoute``), served directly or through the full stack."""
    app = build_app(DemoSettings(max_body_bytes=1_000), "demo")
    router = APIRouter()

    async def callback(request: Request, kind: str | None = None) -> Response:
        body = await request.body()
        if kind == "refused":
            raise Problem(403, "Forbidden", "invalid or missing X-Twilio-Signature", "/problems/signature")
        if kind == "bug":
            raise RuntimeError("a bug")
        trace = current()
        return JSONResponse({"kind": kind, "size": len(body), "trace": trace.trace_id if trace else None})

    router.add_api_route("/callback", callback, methods=["POST"], route_class_override=DirectRoute)
    app.include_router(router)
    if direct:
        app.serve_directly(router)
    return app


async def test_a_direct_route_answers_as_the_full_stack_does() -> None:
    trace = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"
    requests = [
        ("/callback?kind=ok&traceparent=" + trace, b"x=1"),
        ("/callback?kind=refused", b"x=1"),
        ("/callback?kind=bug", b"x=1"),
        ("/callback?kind=big", b"x" * 2_000),
    ]
    answers, metrics = [], []
    apps = [_callback_app(direct=False), _callback_app(direct=True)]
    for app in apps:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            seen = []
            for url, body in requests:
                r = await client.post(url, content=body)
                seen.append((r.status_code, r.headers.get("content-type"), r.json()))
            answers.append(seen)
            text = (await client.get("/metrics")).text
            counted = (line for line in text.splitlines() if line.startswith("cadencia_http_requests_total"))
            metrics.append(sorted(counted))
    assert answers[0] == answers[1]
    assert [status for status, _, _ in answers[1]] == [200, 403, 500, 413]
    assert answers[1][0][2]["trace"] == "a" * 32
    assert answers[1][1][2]["type"] == "/problems/signature"
    assert metrics[0] == metrics[1] and any('route="/callback",status="403"' in line for line in metrics[1])
    assert apps[1]._direct_stack is not None and apps[0]._direct_stack is None  # the short chain answered
