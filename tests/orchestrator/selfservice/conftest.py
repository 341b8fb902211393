"""Self-service fixtures: the orchestrator with the reminder, confirmation and link templates published."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest

from shared.config import KafkaSettings
from tests.orchestrator.conftest import FakeClock, Orchestrator, make_settings, running

TEMPLATES = ("reminder", "promise_confirmation", "self_service_link")
TOKEN = re.compile(r"/s/([A-Za-z0-9_-]{24})$")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def orchestrator(kafka_settings: KafkaSettings, database_url: str, clock: FakeClock
                       ) -> AsyncIterator[Orchestrator]:
    settings = make_settings(kafka_settings, database_url, self_service_url="https://cad.example")
    async with running(settings, clock, TEMPLATES) as o:
        yield o


def token_of(url: str) -> str:
    found = TOKEN.search(url)
    assert found, url
    return found.group(1)
