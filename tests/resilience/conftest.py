"""The channel fixtures (sandbox, outcomes reader, publisher, group) for the resilience tests."""

from tests.channel_fixtures import group, outcomes, publisher, sandbox, topics

__all__ = ["group", "outcomes", "publisher", "sandbox", "topics"]
