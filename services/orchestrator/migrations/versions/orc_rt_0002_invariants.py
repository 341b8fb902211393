"""orchestrator runtime: the database refuses a second dispatch per attempt and a second pending deferral

Revision ID: orc_rt_0002
Revises: orc_rt_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "orc_rt_0002"
down_revision = "orc_rt_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ux_dispatches_request_attempt", "dispatches", ["request_id", "attempt"], unique=True)
    pending = sa.text("state = 'pending'")
    op.create_index(
        "ux_deferred_contacts_pending", "deferred_contacts", ["request_id"], unique=True,
        postgresql_where=pending, sqlite_where=pending,
    )


def downgrade() -> None:
    op.drop_index("ux_deferred_contacts_pending", table_name="deferred_contacts")
    op.drop_index("ux_dispatches_request_attempt", table_name="dispatches")
