"""imports: portfolio import jobs and their per-row errors

Revision ID: orc_imp_0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "orc_imp_0001"
down_revision = None
branch_labels = ("imports",)
depends_on = "shared_0001"


def upgrade() -> None:
    op.create_table(
        "import_jobs",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("filename", sa.String(300), nullable=False),
        sa.Column("format", sa.String(10), nullable=False),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("bytes_total", sa.BigInteger, nullable=False),
        sa.Column("bytes_read", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("rows_read", sa.Integer, nullable=False, server_default="0"),
        sa.Column("rows_accepted", sa.Integer, nullable=False, server_default="0"),
        sa.Column("rows_failed", sa.Integer, nullable=False, server_default="0"),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "import_row_errors",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(40), nullable=False),
        sa.Column("line", sa.Integer, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
    )
    op.create_index("ix_import_row_errors_job_line", "import_row_errors", ["job_id", "line"])


def downgrade() -> None:
    op.drop_table("import_row_errors")
    op.drop_table("import_jobs")
