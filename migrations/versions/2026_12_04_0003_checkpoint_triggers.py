"""Checkpoints say what wrote them (periodic, final or a ModelCheckpoint callback), the batch
of a mid-epoch save, and which monitor and mode select the job's `best` checkpoint.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("checkpoints") as batch:
        batch.add_column(
            sa.Column("trigger", sa.String(20), nullable=False, server_default="periodic")
        )
        batch.add_column(sa.Column("batch", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("monitor", sa.String(200), nullable=True))
        batch.add_column(sa.Column("mode", sa.String(8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("checkpoints") as batch:
        batch.drop_column("mode")
        batch.drop_column("monitor")
        batch.drop_column("batch")
        batch.drop_column("trigger")
