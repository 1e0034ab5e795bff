"""Projects (tenants), API keys stored as hashes, the audit log, and the project of every model,
dataset and job. Existing rows, and the single-user embedded mode, belong to the `default`
project.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DEFAULT_PROJECT_ID = uuid.UUID("00000000-0000-0000-0000-000000000001")
SCOPED = ("models", "datasets", "jobs")
# What each table stores, counted in its project's stored bytes.
BYTES = (("models", "weights_bytes"), ("jobs", "inputs_bytes"), ("datasets", "stored_bytes"))


def upgrade() -> None:
    projects = op.create_table(
        "projects",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("quotas", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_projects")),
        sa.UniqueConstraint("name", name=op.f("uq_projects_name")),
    )
    now = datetime.now(UTC)
    if op.get_bind().dialect.name == "sqlite":
        now = now.replace(tzinfo=None)
    op.bulk_insert(
        projects, [{"id": DEFAULT_PROJECT_ID, "name": "default", "quotas": {}, "created_at": now}]
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=False),
        sa.Column("role", sa.String(length=10), nullable=False),
        sa.Column("prefix", sa.String(length=32), nullable=False),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"],
                                name=op.f("fk_api_keys_project_id_projects"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("token_sha256", name=op.f("uq_api_keys_token_sha256")),
    )  # fmt: skip
    op.create_index(op.f("ix_api_keys_project_id"), "api_keys", ["project_id"])
    op.create_index(op.f("ix_api_keys_prefix"), "api_keys", ["prefix"])
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True,
                  nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("project_id", sa.Uuid(), nullable=True),
        sa.Column("key_id", sa.Uuid(), nullable=True),
        sa.Column("key_prefix", sa.String(length=32), nullable=True),
        sa.Column("role", sa.String(length=10), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("route", sa.String(length=200), nullable=False),
        sa.Column("resource_type", sa.String(length=20), nullable=False),
        sa.Column("resource_id", sa.String(length=100), nullable=True),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )  # fmt: skip
    op.create_index(op.f("ix_audit_log_at"), "audit_log", ["at"])
    op.create_index(op.f("ix_audit_log_project_id"), "audit_log", ["project_id"])
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table in SCOPED:
        fk = f"fk_{table}_project_id_projects"
        if sqlite:
            # Never a table rebuild on SQLite: dropping the old table would cascade-delete the
            # rows that reference it. ADD COLUMN with a reference must allow NULL there; the
            # application always sets the project.
            op.execute(
                f"ALTER TABLE {table} ADD COLUMN project_id CHAR(32) "
                f"CONSTRAINT {fk} REFERENCES projects (id) ON DELETE CASCADE"
            )
        else:
            op.add_column(table, sa.Column("project_id", sa.Uuid(), nullable=True))
        op.execute(
            sa.table(table, sa.column("project_id", sa.Uuid())).update()
            .values(project_id=DEFAULT_PROJECT_ID)
        )  # fmt: skip
        if not sqlite:
            op.alter_column(table, "project_id", existing_type=sa.Uuid(), nullable=False)
            op.create_foreign_key(fk, table, "projects", ["project_id"], ["id"],
                                  ondelete="CASCADE")  # fmt: skip
        op.create_index(f"ix_{table}_project_id", table, ["project_id"])
    for table, column in BYTES:
        op.add_column(
            table, sa.Column(column, sa.BigInteger(), nullable=False, server_default="0")
        )
    # What existing datasets hold, as near as the rows tell: the bytes uploaded.
    datasets = sa.table("datasets", sa.column("stored_bytes"), sa.column("size_bytes"))
    op.execute(datasets.update().values(stored_bytes=datasets.c.size_bytes))


def downgrade() -> None:
    for table, column in BYTES:
        op.drop_column(table, column)
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table in SCOPED:
        op.drop_index(f"ix_{table}_project_id", table_name=table)
        if not sqlite:
            op.drop_constraint(f"fk_{table}_project_id_projects", table, type_="foreignkey")
        op.drop_column(table, "project_id")  # SQLite 3.35+ drops it with its reference
    op.drop_index(op.f("ix_audit_log_project_id"), table_name="audit_log")
    op.drop_index(op.f("ix_audit_log_at"), table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_index(op.f("ix_api_keys_prefix"), table_name="api_keys")
    op.drop_index(op.f("ix_api_keys_project_id"), table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_table("projects")
