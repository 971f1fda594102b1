"""Add the runtime that each instance reports

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04 23:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The server default fills the rows that exist, so the columns can be NOT NULL.
    op.add_column(
        "instances",
        sa.Column("runtime", sa.String(length=32), nullable=False, server_default=""),
    )
    op.add_column(
        "instances", sa.Column("runtime_note", sa.Text(), nullable=False, server_default="")
    )


def downgrade() -> None:
    # batch_alter_table copies the table on SQLite, where DROP COLUMN needs SQLite 3.35.
    with op.batch_alter_table("instances") as batch:
        batch.drop_column("runtime_note")
        batch.drop_column("runtime")
