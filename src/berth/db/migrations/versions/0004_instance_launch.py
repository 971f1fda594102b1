"""Add what each instance was last started with

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 13:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The server default fills the rows that exist, so the column can be NOT NULL.
    op.add_column("instances", sa.Column("launch", sa.Text(), nullable=False, server_default=""))


def downgrade() -> None:
    # batch_alter_table copies the table on SQLite, where DROP COLUMN needs SQLite 3.35.
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("launch")
