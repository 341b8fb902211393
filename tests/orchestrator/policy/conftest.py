"""Fixtures for the policy engine tests: the shipped packs, loaded once."""

from __future__ import annotations

import pytest

from services.orchestrator.policy import Policy, load_policy


@pytest.fixture(scope="session")
def policy() -> Policy:
    return load_policy()
