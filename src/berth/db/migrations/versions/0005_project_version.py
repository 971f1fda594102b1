"""Add a version to projects for optimistic concurrency

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 10:00:00.000000
"""

import sqlite3
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The server default gives the projects that exist version 1, as a new project gets.
    op.add_column(
        "projects", sa.Column("version", sa.Integer(), nullable=False, server_default="1")
    )


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite" and sqlite3.sqlite_version_info < (3, 35):
        # Only SQLite 3.35 and later has DROP COLUMN. batch_alter_table copies the table
        # instead. NOTE: that copy fails with "FOREIGN KEY constraint failed" once
        # endpoints refer to the projects.
        with op.batch_alter_table("projects") as batch:
            batch.drop_column("version")
        return
    op.drop_column("projects", "version")
