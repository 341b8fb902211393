"""The channel services' test fixtures: the sandbox, topics, the outcomes reader, a publisher and a consumer
group. Each channel's tests import them into their conftest (messaging, email, voice, resilience...)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from services.sandbox.testing import SandboxHandle, running_sandbox
from shared.bus import ensure_topics
from shared.config import KafkaSettings
from shared.events import Topics
from tests.channel_harness import Publisher
from tests.helpers import TopicReader


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxHandle]:
    async with running_sandbox() as handle:
        yield handle


@pytest.fixture
async def topics(kafka_settings: KafkaSettings) -> Topics:
    await ensure_topics(kafka_settings)
    return Topics(kafka_settings.topic_prefix)


@pytest.fixture
async def outcomes(kafka_settings: KafkaSettings, topics: Topics) -> AsyncIterator[TopicReader]:
    async with TopicReader(kafka_settings, topics.contact_outcomes) as reader:
        yield reader


@pytest.fixture
async def publisher(kafka_settings: KafkaSettings, topics: Topics) -> AsyncIterator[Publisher]:
    async with Publisher(kafka_settings) as pub:
        yield pub


@pytest.fixture
def group() -> str:
    return f"g-{uuid.uuid4().hex[:8]}"
