"""Storage: async SQLAlchemy engine per service, the inbox, the transactional outbox, migrations.

SQLite (aiosqlite) is the default; PostgreSQL (asyncpg) in production. One database (or schema)
per service: each service's Alembic history lives in its own version table.
"""

from shared.db.database import Base, Database
from shared.db.group import GroupWriter, Write, WriterStopped
from shared.db.inbox import InboxRecord, first_time, first_times, mark_processed
from shared.db.outbox import Outbox, OutboxBatch, OutboxRecord, OutboxRelay, add_to_outbox, outbox_values

__all__ = [
    "Base",
    "Database",
    "GroupWriter",
    "InboxRecord",
    "Outbox",
    "OutboxBatch",
    "OutboxRecord",
    "OutboxRelay",
    "Write",
    "WriterStopped",
    "add_to_outbox",
    "first_time",
    "first_times",
    "mark_processed",
    "outbox_values",
]
