"""Record each checkpoint's architecture and whether it has a chat template

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 10:00:00.000000
"""

import sqlite3
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Existing checkpoints get an unknown architecture ("") and chat template (NULL),
    # because their files were not read for them at import.
    op.add_column(
        "checkpoints",
        sa.Column("architecture", sa.String(100), nullable=False, server_default=""),
    )
    op.add_column("checkpoints", sa.Column("has_chat_template", sa.Boolean(), nullable=True))


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite" and sqlite3.sqlite_version_info < (3, 35):
        # Only SQLite 3.35 and later has DROP COLUMN. batch_alter_table copies the table
        # instead. NOTE: that copy fails with "FOREIGN KEY constraint failed" once
        # endpoints refer to the checkpoints.
        with op.batch_alter_table("checkpoints") as batch:
            batch.drop_column("has_chat_template")
            batch.drop_column("architecture")
        return
    op.drop_column("checkpoints", "has_chat_template")
    op.drop_column("checkpoints", "architecture")
