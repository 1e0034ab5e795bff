"""A job resumed from another job's checkpoint names its parent job (set to null if the parent
goes) and the checkpoint it starts from.

SQLite adds the parent's reference in place (ALTER TABLE ... ADD COLUMN ... REFERENCES):
rebuilding the jobs table there would, with foreign keys on, cascade a delete of every epoch
log and checkpoint row.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FK = "fk_jobs_parent_job_id_jobs"
INDEX = "ix_jobs_parent_job_id"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            "ALTER TABLE jobs ADD COLUMN parent_job_id CHAR(32) "
            f"CONSTRAINT {FK} REFERENCES jobs (id) ON DELETE SET NULL"
        )
    else:
        op.add_column("jobs", sa.Column("parent_job_id", sa.Uuid(), nullable=True))
        op.create_foreign_key(FK, "jobs", "jobs", ["parent_job_id"], ["id"], ondelete="SET NULL")
    op.add_column("jobs", sa.Column("start_checkpoint_id", sa.Uuid(), nullable=True))
    op.create_index(INDEX, "jobs", ["parent_job_id"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="jobs")
    op.drop_column("jobs", "start_checkpoint_id")
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint(FK, "jobs", type_="foreignkey")
    op.drop_column("jobs", "parent_job_id")  # SQLite 3.35+ drops it with its reference
