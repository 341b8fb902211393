"""The email tests use the channel services' fixtures (tests/channel_fixtures.py)."""

from tests.channel_fixtures import group, outcomes, publisher, sandbox, topics

__all__ = ["group", "outcomes", "publisher", "sandbox", "topics"]
