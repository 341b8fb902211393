"""The production descriptors run every service the CLI knows, as the command the image expects."""

from __future__ import annotations

from pathlib import Path

import yaml

from shared.cli import SERVICES

ROOT = Path(__file__).resolve().parents[2]
PRODUCTION = set(SERVICES) - {"sandbox"}  # the sandbox is for tests and make run, never production


def test_compose_runs_every_production_service_on_kafka_and_postgres() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert PRODUCTION <= set(services)
    for name in PRODUCTION:
        assert services[name]["command"][:2] == ["serve", name]
        env = services[name]["environment"]
        assert env["CADENCIA_ENV"] == "production"
        assert env["DATABASE_URL"].startswith("postgresql+asyncpg://")
        assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert "sandbox" not in services


def test_kubernetes_deploys_every_production_service_with_probes() -> None:
    docs = [d for f in sorted((ROOT / "deploy" / "k8s").glob("*.yaml")) for d in yaml.safe_load_all(f.read_text())]
    deployments = {d["metadata"]["name"].removeprefix("cadencia-"): d for d in docs if d["kind"] == "Deployment"}
    assert set(deployments) == PRODUCTION
    for name, deployment in deployments.items():
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["args"][:2] == ["serve", name]
        assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
        assert container["livenessProbe"]["httpGet"]["path"] == "/health"
