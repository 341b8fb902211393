"""Loading the deploy artefacts as an operator's tools would, and the settings each service would get."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from tooling.cli import SERVICES

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
SECRET_TEMPLATE = ROOT / "deploy" / "secrets" / "cadencia-secrets.example.yaml"
SCHEMAS = ROOT / "deploy" / "schemas"
PRODUCTION = sorted(set(SERVICES) - {"sandbox"})  # the sandbox is for tests and make run, never production
CHANNELS = sorted(set(PRODUCTION) - {"orchestrator"})
#: Variable names that hold a secret: never a literal in a manifest, always a reference.
SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|_SID|DATABASE_URL|REDIS_URL)")
#: Variables a test environment may carry that a production pod would not.
ENV_PREFIXES = ("CADENCIA_", "KAFKA_", "TWILIO_", "SENDGRID_", "REDIS_URL", "DATABASE_URL")


def k8s_documents() -> list[dict[str, Any]]:
    return [d for path in sorted(K8S.glob("*.yaml")) for d in yaml.safe_load_all(path.read_text()) if d]


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in k8s_documents() if d["kind"] == kind}


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def filled_secret() -> dict[str, str]:
    """The Secret template with each placeholder replaced by a distinct made-up value, as an operator would."""
    secret = yaml.safe_load(SECRET_TEMPLATE.read_text())
    counter = iter(range(1000))
    return {
        key: re.sub("replace-me", lambda _: f"filled{next(counter)}", str(value))
        for key, value in secret["stringData"].items()
    }


def pod_environment(container: dict[str, Any]) -> dict[str, str]:
    """The environment Kubernetes gives ``container``: envFrom (ConfigMap, the filled Secret), then env."""
    config = of_kind("ConfigMap")["cadencia-config"]["data"]
    secret = filled_secret()
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            assert source["configMapRef"]["name"] == "cadencia-config"
            env.update(config)
        if "secretRef" in source:
            assert source["secretRef"]["name"] == "cadencia-secrets"
            env.update(secret)
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            assert ref["name"] == "cadencia-secrets"
            env[item["name"]] = secret[ref["key"]]
    return env


COMPOSE_VARIABLES = {
    "CADENCIA_API_KEYS": "admin:compose-admin-key",
    "CADENCIA_ORCHESTRATOR_API_KEY": "compose-viewer-key",
    "TWILIO_ACCOUNT_SID": "AC" + "7" * 32,
    "TWILIO_AUTH_TOKEN": "compose-twilio-token",
    "SENDGRID_API_KEY": "SG.compose-key",
    "SENDGRID_WEBHOOK_PUBLIC_KEY": "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE",
    "EMAIL_UNSUBSCRIBE_SECRET": "compose-unsubscribe-secret",
    "SELF_SERVICE_SECRET": "compose-self-service-secret",
    "SELF_SERVICE_URL": "https://pay.example.org",
    "POSTGRES_PASSWORD": "compose-pg-password",
    "SMS_PUBLIC_URL": "https://sms.hooks.example.org",
    "WHATSAPP_PUBLIC_URL": "https://whatsapp.hooks.example.org",
    "EMAIL_PUBLIC_URL": "https://email.hooks.example.org",
    "VOICE_PUBLIC_URL": "https://voice.hooks.example.org",
}
_INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?:(?P<op>:\?|:-)(?P<arg>[^}]*))?\}")


def interpolate(value: str, variables: dict[str, str]) -> str:
    """Compose's ``${VAR}``, ``${VAR:?message}`` and ``${VAR:-default}``."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        if variables.get(name):
            return variables[name]
        if op == ":-":
            return arg or ""
        raise KeyError(f"compose needs {name}: {arg}")

    return _INTERPOLATION.sub(one, value)


def topic_partitions(config: dict[str, str]) -> dict[str, int]:
    loaded: dict[str, int] = json.loads(config["KAFKA_TOPIC_PARTITIONS"])
    return loaded
