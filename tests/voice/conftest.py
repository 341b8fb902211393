"""The channel tests' fixtures (sandbox, topics, outcomes reader, publisher, group), reused for voice."""

from tests.channel_fixtures import group, outcomes, publisher, sandbox, topics

__all__ = ["group", "outcomes", "publisher", "sandbox", "topics"]
