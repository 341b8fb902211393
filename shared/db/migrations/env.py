"""Alembic environment shared by every service; the connection comes from ``shared.db.migrate``."""

from alembic import context

import shared.db  # noqa: F401  (registers the shared tables)
from shared.db.database import Base

config = context.config
connection = config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    version_table=config.attributes.get("version_table", "alembic_version"),
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
