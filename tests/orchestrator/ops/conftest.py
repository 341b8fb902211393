"""The ops tests run the orchestrator as the runtime tests do: real broker, both databases, a fake clock."""

from tests.orchestrator.conftest import clock, orchestrator  # noqa: F401  (fixtures)
