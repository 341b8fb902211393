"""templates: who saved, published and rolled back each version; four-eyes publish approvals

Revision ID: orc_tpl_0002
Revises: orc_tpl_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "orc_tpl_0002"
down_revision = "orc_tpl_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("template_versions", sa.Column("created_by", sa.String(100), nullable=True))
    op.create_table(
        "template_changes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("locale", sa.String(20), nullable=False),
        sa.Column("variant", sa.String(40), nullable=False),
        sa.Column("action", sa.String(30), nullable=False),
        sa.Column("actor", sa.String(100), nullable=False),
        sa.Column("approved_by", sa.String(100), nullable=True),
        sa.Column("weight", sa.Float, nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_template_changes_key", "template_changes", ["key", "id"])
    op.create_table(
        "template_approvals",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("key", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("weight", sa.Float, nullable=True),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("requested_by", sa.String(100), nullable=False),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.String(100), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_template_approvals_key_state", "template_approvals", ["key", "state"])


def downgrade() -> None:
    op.drop_index("ix_template_approvals_key_state", table_name="template_approvals")
    op.drop_table("template_approvals")
    op.drop_index("ix_template_changes_key", table_name="template_changes")
    op.drop_table("template_changes")
    op.drop_column("template_versions", "created_by")
