"""Fixtures of the reliability suite: the channel tests' sandbox, topics, publisher and group."""

from tests.channel_fixtures import group, outcomes, publisher, sandbox, topics

__all__ = ["group", "outcomes", "publisher", "sandbox", "topics"]
