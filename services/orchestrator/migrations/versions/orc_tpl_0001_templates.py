"""templates: immutable versions and the published pointer per (key, channel, locale, variant)

Revision ID: orc_tpl_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "orc_tpl_0001"
down_revision = None
branch_labels = ("templates",)
depends_on = "shared_0001"


def upgrade() -> None:
    op.create_table(
        "template_versions",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("channel", sa.String(20), nullable=False),
        sa.Column("locale", sa.String(20), nullable=False),
        sa.Column("variant", sa.String(40), nullable=False),
        sa.Column("content", sa.JSON, nullable=False),
        sa.Column("variables_schema", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_template_versions_combo", "template_versions", ["key", "channel", "locale", "variant"])
    op.create_table(
        "template_published",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("channel", sa.String(20), primary_key=True),
        sa.Column("locale", sa.String(20), primary_key=True),
        sa.Column("variant", sa.String(40), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("weight", sa.Float, nullable=False, server_default="1"),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("template_published")
    op.drop_index("ix_template_versions_combo", table_name="template_versions")
    op.drop_table("template_versions")
