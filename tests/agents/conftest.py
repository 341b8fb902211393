"""Fixtures of the agent queues' end-to-end tests through the voice service: the channel tests' topics,
outcomes reader, publisher and group, and a sandbox that compresses provider time only 10× (not 1000×).

Whether two calls overlap (one talks to the agent while the other waits on hold) depends on when the
dispatch pipeline places them, which on a busy machine can be a second or two apart: at 10× that is
10-20 provider seconds, well inside the talks and holds the tests script (60 s and more)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.sandbox.testing import SandboxHandle, running_sandbox
from tests.channel_fixtures import group, outcomes, publisher, topics

__all__ = ["group", "outcomes", "publisher", "sandbox", "topics"]


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxHandle]:
    async with running_sandbox(speed_factor=10.0) as handle:
        yield handle
