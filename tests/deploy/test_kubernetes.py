"""The Kubernetes manifests: valid against the Kubernetes schemas (offline), complete, and production-safe.

Every built-in kind is validated with the schemas bundled in ``kubernetes-validate``; KEDA's
ScaledObject with its CRD's schema, vendored in deploy/schemas. Then each service's Settings are
built from exactly the environment its pod would get: production refuses the sandbox, loopback URLs
and development secrets, so any of those left in a manifest fails here.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml
from pydantic import ValidationError

from tests.deploy.artefacts import (
    CHANNELS,
    PRODUCTION,
    SCHEMAS,
    SECRET_NAME,
    SECRET_TEMPLATE,
    filled_secret,
    k8s_documents,
    of_kind,
    pod_environment,
    topic_partitions,
)

KUBERNETES_VERSION = "1.30"  # the oldest release the manifests promise to work on
SettingsFrom = Callable[[str, dict[str, str]], Any]


def containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod_spec.get("initContainers", []), *pod_spec["containers"]]


def test_every_manifest_is_valid_against_the_kubernetes_and_keda_schemas() -> None:
    keda = json.loads((SCHEMAS / "keda-scaledobject-v1alpha1.json").read_text())
    documents = k8s_documents() + [yaml.safe_load(SECRET_TEMPLATE.read_text())]
    for document in documents:
        if document["kind"] == "ScaledObject":
            assert document["apiVersion"] == "keda.sh/v1alpha1"
            jsonschema.validate(document, keda)
        else:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
    kinds = sorted({d["kind"] for d in documents})
    assert kinds == ["ConfigMap", "Deployment", "Ingress", "Job", "ScaledObject", "Secret", "Service"]


def test_the_validation_catches_a_misspelt_field() -> None:
    deployment = of_kind("Deployment")["cadencia-sms"]
    broken = json.loads(json.dumps(deployment))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessprobe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)
    scaled = json.loads(json.dumps(of_kind("ScaledObject")["cadencia-sms"]))
    scaled["spec"]["maxReplicaCount"] = "twelve"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(scaled, json.loads((SCHEMAS / "keda-scaledobject-v1alpha1.json").read_text()))


def test_every_service_runs_its_command_with_probes_resources_scraping_and_secrets_by_reference() -> None:
    deployments = {name.removeprefix("cadencia-"): d for name, d in of_kind("Deployment").items()}
    assert sorted(deployments) == PRODUCTION
    services = of_kind("Service")
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]
        main = pod["spec"]["containers"][0]
        port = main["ports"][0]["containerPort"]
        assert main["args"][:2] == ["serve", name] and main["args"][-1] == str(port)
        assert main["startupProbe"]["httpGet"]["path"] == "/health"
        assert main["readinessProbe"]["httpGet"]["path"] == "/ready"
        assert main["livenessProbe"]["httpGet"]["path"] == "/health"
        assert pod["metadata"]["annotations"] == {
            "prometheus.io/scrape": "true", "prometheus.io/port": str(port), "prometheus.io/path": "/metrics"
        }
        # Migrations are the Job's: a replica waits for its schema, it never runs Alembic.
        wait = pod["spec"]["initContainers"][0]
        assert wait["args"] == ["migrate", name, "--check", "--wait", "600"]
        assert "replicas" not in deployment["spec"]  # the ScaledObject owns the count
        assert services[name]["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
        assert services[name]["spec"]["ports"][0]["port"] == port
    job = of_kind("Job")["cadencia-migrate"]
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]
    pod_specs = [d["spec"]["template"]["spec"] for d in deployments.values()] + [job["spec"]["template"]["spec"]]
    for spec in pod_specs:
        for container in containers(spec):
            assert {"requests", "limits"} <= set(container["resources"]), container["name"]
            assert {"secretRef": {"name": "cadencia-secrets"}} in container["envFrom"]
            for item in container.get("env", []):  # a secret is never written into a manifest
                assert "value" not in item or not SECRET_NAME.search(item["name"]), item
    config = of_kind("ConfigMap")["cadencia-config"]["data"]
    assert not [key for key in config if SECRET_NAME.search(key)]


@pytest.mark.parametrize("service", PRODUCTION)
def test_each_pod_gets_production_settings_that_point_at_the_real_providers(
    service: str, settings_from: SettingsFrom
) -> None:
    deployment = of_kind("Deployment")[f"cadencia-{service}"]
    env = pod_environment(deployment["spec"]["template"]["spec"]["containers"][0])
    settings = settings_from(service, env)  # raises if anything is a development default or the sandbox
    assert settings.env == "production" and settings.log_format == "json"
    assert settings.migrate_on_start is False
    assert settings.database.url.startswith("postgresql+asyncpg://")
    if service in CHANNELS:
        assert settings.redis_url.startswith("redis://")
        assert settings.orchestrator_url == "http://orchestrator:8000"
        provider = settings.sendgrid.base_url if service == "email" else settings.twilio.base_url
        assert provider in ("https://api.sendgrid.com", "https://api.twilio.com")


def test_a_manifest_left_on_the_sandbox_or_loopback_does_not_start(settings_from: SettingsFrom) -> None:
    deployment = of_kind("Deployment")["cadencia-sms"]
    env = pod_environment(deployment["spec"]["template"]["spec"]["containers"][0])
    for name, value in [
        ("TWILIO_API_BASE_URL", "http://127.0.0.1:8090"),
        ("CADENCIA_SMS_PUBLIC_URL", "http://127.0.0.1:8001"),
        ("CADENCIA_ORCHESTRATOR_API_KEY", "dev-admin-key"),
        ("TWILIO_AUTH_TOKEN", "replace-me"),
    ]:
        with pytest.raises(ValidationError, match=name if name != "TWILIO_AUTH_TOKEN" else "placeholder"):
            settings_from("sms", {**env, name: value})


def test_the_ingress_routes_each_channels_webhooks_to_its_service_at_its_public_url() -> None:
    config = of_kind("ConfigMap")["cadencia-config"]["data"]
    ingress = of_kind("Ingress")["cadencia-webhooks"]["spec"]
    hosts = {rule["host"]: rule for rule in ingress["rules"]}
    assert set(ingress["tls"][0]["hosts"]) == set(hosts)
    for channel in CHANNELS:
        public = urlsplit(config[f"CADENCIA_{channel.upper()}_PUBLIC_URL"])
        assert public.scheme == "https"
        paths = hosts[public.hostname]["http"]["paths"]
        assert {p["backend"]["service"]["name"] for p in paths} == {channel}
        routed = {p["path"] for p in paths}
        wanted = {"sms": {"/webhooks/twilio"}, "whatsapp": {"/webhooks/twilio"},
                  "email": {"/webhooks/sendgrid", "/unsubscribe"}, "voice": {"/voice", "/webhooks/twilio"}}
        assert routed == wanted[channel]  # webhooks only: never /metrics, /ready or an API


def test_each_consumer_scales_on_its_lag_up_to_its_topics_partition_count() -> None:
    config = of_kind("ConfigMap")["cadencia-config"]["data"]
    partitions = topic_partitions(config)
    scaled = of_kind("ScaledObject")
    assert sorted(scaled) == [f"cadencia-{s}" for s in PRODUCTION]
    consumed = {"orchestrator": ["contact.requests", "account.events", "contact.outcomes"],
                **{c: [f"dispatch.{c}"] for c in CHANNELS}}
    for service, topics in consumed.items():
        spec = scaled[f"cadencia-{service}"]["spec"]
        assert spec["scaleTargetRef"]["name"] == f"cadencia-{service}"
        triggers = spec["triggers"]
        assert {t["metadata"]["topic"] for t in triggers} == {f"cadencia.{t}" for t in topics}
        for trigger in triggers:
            assert trigger["type"] == "kafka"
            assert trigger["metadata"]["consumerGroup"] == f"cadencia-{service}"
            assert trigger["metadata"]["bootstrapServers"] == config["KAFKA_BOOTSTRAP_SERVERS"]
            assert trigger["metadata"]["allowIdleConsumers"] == "false"
        # More members than partitions would idle: the cap is the largest topic's partition count.
        assert spec["maxReplicaCount"] == max(partitions[t] for t in topics)
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]


def test_the_migration_job_and_init_containers_reach_each_services_database(settings_from: SettingsFrom) -> None:
    from tooling.cli import migration_settings

    job = of_kind("Job")["cadencia-migrate"]
    env = pod_environment(job["spec"]["template"]["spec"]["containers"][0])
    settings_from("orchestrator", env)  # sets exactly the Job's environment
    secret = filled_secret()
    for service in PRODUCTION:
        assert migration_settings(service).database.url == secret[f"{service.upper()}_DATABASE_URL"]
    for name, deployment in of_kind("Deployment").items():
        wait = deployment["spec"]["template"]["spec"]["initContainers"][0]
        assert wait["envFrom"] == job["spec"]["template"]["spec"]["containers"][0]["envFrom"], name
