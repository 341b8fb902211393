"""audit: the rendered content of every dispatch

Revision ID: orc_audit_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "orc_audit_0001"
down_revision = None
branch_labels = ("audit",)
depends_on = "shared_0001"


def upgrade() -> None:
    op.create_table(
        "audit_dispatch_contents",
        sa.Column("dispatch_id", sa.String(200), primary_key=True),
        sa.Column("request_id", sa.String(200), nullable=False),
        sa.Column("debtor_id", sa.String(200), nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("to", sa.String(320), nullable=False),
        sa.Column("template_key", sa.String(200), nullable=False),
        sa.Column("template_version", sa.Integer, nullable=False),
        sa.Column("locale", sa.String(20), nullable=False),
        sa.Column("variant", sa.String(40), nullable=True),
        sa.Column("content", sa.JSON, nullable=True),
        sa.Column("render_error", sa.Text, nullable=True),
        sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_audit_dispatch_contents_debtor", "audit_dispatch_contents", ["debtor_id", "dispatched_at"])


def downgrade() -> None:
    op.drop_index("ix_audit_dispatch_contents_debtor", table_name="audit_dispatch_contents")
    op.drop_table("audit_dispatch_contents")
