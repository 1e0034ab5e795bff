"""Dispatch tracking: when the message that should start a job was sent and is not yet claimed.
The reaper sends a job no second message while one is pending, and fails a job whose lease
expired when nobody claims it within JOB_ORPHANED_AFTER_S.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("pending_dispatch_at", sa.DateTime(timezone=True), nullable=True))
    # Jobs queued before this revision had their message sent when they were dispatched.
    op.execute("UPDATE jobs SET pending_dispatch_at = dispatched_at WHERE status = 'queued'")


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("pending_dispatch_at")
