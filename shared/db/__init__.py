"""Storage: async SQLAlchemy engine per service, the inbox, the transactional outbox, migrations.

SQLite (aiosqlite) is the default; PostgreSQL (asyncpg) in production. One database (or schema)
per service: each service's Alembic history lives in its own version table.
"""

from shared.db.database import Base, Database
from shared.db.inbox import InboxRecord, first_time, first_times
from shared.db.outbox import OutboxRecord, OutboxRelay, add_to_outbox, outbox_values

__all__ = [
    "Base",
    "Database",
    "InboxRecord",
    "OutboxRecord",
    "OutboxRelay",
    "add_to_outbox",
    "first_time",
    "first_times",
    "outbox_values",
]
