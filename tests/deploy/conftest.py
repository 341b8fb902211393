from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

from tests.deploy.artefacts import ENV_PREFIXES
from tooling.cli import load_service


@pytest.fixture
def settings_from(monkeypatch: pytest.MonkeyPatch) -> Callable[[str, dict[str, str]], Any]:
    """A service's Settings read from exactly ``env``, as the process in the pod or container would."""

    def build(service: str, env: dict[str, str]) -> Any:
        for name in list(os.environ):
            if name.startswith(ENV_PREFIXES) or name.endswith(("_DATABASE_URL", "_KAFKA_BOOTSTRAP_SERVERS")):
                monkeypatch.delenv(name)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        settings_cls, _ = load_service(service)
        return settings_cls()

    return build
