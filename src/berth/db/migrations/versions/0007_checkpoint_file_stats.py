"""Record the size and modification time of each checkpoint file

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07 11:00:00.000000
"""

import sqlite3
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Existing checkpoints get NULL: their files were not measured at import, so no
    # instance start compares them.
    op.add_column("checkpoints", sa.Column("file_stats", sa.JSON(), nullable=True))


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite" and sqlite3.sqlite_version_info < (3, 35):
        # Only SQLite 3.35 and later has DROP COLUMN. batch_alter_table copies the table
        # instead. NOTE: that copy fails with "FOREIGN KEY constraint failed" once
        # endpoints refer to the checkpoints.
        with op.batch_alter_table("checkpoints") as batch:
            batch.drop_column("file_stats")
        return
    op.drop_column("checkpoints", "file_stats")
