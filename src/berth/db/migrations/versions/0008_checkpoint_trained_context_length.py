"""Record the trained context length of each checkpoint

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 00:40:00.000000
"""

import sqlite3
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Existing checkpoints get NULL, which means unknown: an endpoint on them accepts any
    # context_length in range, and the instance's load rejects one above the model's.
    op.add_column("checkpoints", sa.Column("trained_context_length", sa.Integer(), nullable=True))


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite" and sqlite3.sqlite_version_info < (3, 35):
        # Only SQLite 3.35 and later has DROP COLUMN. batch_alter_table copies the table
        # instead. NOTE: that copy fails with "FOREIGN KEY constraint failed" once
        # endpoints refer to the checkpoints.
        with op.batch_alter_table("checkpoints") as batch:
            batch.drop_column("trained_context_length")
        return
    op.drop_column("checkpoints", "trained_context_length")
