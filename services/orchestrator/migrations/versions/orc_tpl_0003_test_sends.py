"""templates: test sends of a version to an editor's own address

Revision ID: orc_tpl_0003
Revises: orc_tpl_0002
"""

import sqlalchemy as sa
from alembic import op

revision = "orc_tpl_0003"
down_revision = "orc_tpl_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "template_test_sends",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("key", sa.String(100), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("to", sa.String(320), nullable=False),
        sa.Column("requested_by", sa.String(100), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_template_test_sends_by_at", "template_test_sends", ["requested_by", "at"])


def downgrade() -> None:
    op.drop_index("ix_template_test_sends_by_at", table_name="template_test_sends")
    op.drop_table("template_test_sends")
