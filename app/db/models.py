"""The schema, as typed SQLAlchemy models. Migrations in migrations/ create it; never create_all
outside tests of the migrations themselves."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    Uuid,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, UTCDateTime, utcnow


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in (JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled)


# The project every resource of the single-user embedded mode (and every row older than
# projects) belongs to.
DEFAULT_PROJECT_ID = uuid.UUID("00000000-0000-0000-0000-000000000001")
DEFAULT_PROJECT_NAME = "default"


class Role(StrEnum):
    """What a key may do: `viewer` reads its project, `member` reads and writes it, `admin`
    does everything in every project."""

    viewer = "viewer"
    member = "member"
    admin = "admin"

    @property
    def rank(self) -> int:
        return ("viewer", "member", "admin").index(self.value)


class ProjectRow(Base):
    """A tenant: every model, dataset and job belongs to exactly one project."""

    __tablename__ = "projects"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    # Per-project overrides of the QUOTA_* settings: quota name -> limit.
    quotas: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ApiKeyRow(Base):
    """An API key: only the sha256 of the token is stored, with its short visible prefix."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    project_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(10))
    prefix: Mapped[str] = mapped_column(String(32), index=True)
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str | None] = mapped_column(String(200), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)


class AuditRow(Base):
    """Append-only: who created, changed, deleted, cancelled, ran or downloaded what, and when."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # The caller's project and key (null key: the single-user embedded mode or the admin CLI).
    project_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None, index=True)
    key_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    key_prefix: Mapped[str | None] = mapped_column(String(32), default=None)
    role: Mapped[str] = mapped_column(String(10))
    # create, update, delete, cancel, run or download
    action: Mapped[str] = mapped_column(String(20))
    # The route (method and path template) and the resource it acted on.
    route: Mapped[str] = mapped_column(String(200))
    resource_type: Mapped[str] = mapped_column(String(20))
    resource_id: Mapped[str | None] = mapped_column(String(100), default=None)
    status_code: Mapped[int] = mapped_column(Integer)


class IdempotencyState(StrEnum):
    in_progress = "in_progress"
    done = "done"
    # Ended, but its response is not stored (it showed a secret, or was too large): a retry
    # is told so and does not run again.
    not_kept = "not_kept"


class IdempotencyKeyRow(Base):
    """A POST's `Idempotency-Key` within its caller's project: taken while the request runs,
    then the response a retry gets again (app.api.idempotency)."""

    __tablename__ = "idempotency_keys"

    project_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    # Which caller took it: its API key (None: the single-user mode's implicit admin). Another
    # caller of the project gets no replay.
    key_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    # Which request took it: a retry must be the same one. The fingerprint, set when it ends,
    # is the SHA-256 of its method, path with query, Content-Type, Accept and body SHA-256.
    method: Mapped[str] = mapped_column(String(10))
    path: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str | None] = mapped_column(String(64), default=None)
    state: Mapped[str] = mapped_column(String(20))
    # A random id of the request holding the key: only it renews, settles or releases it.
    owner: Mapped[str] = mapped_column(String(32))
    # While in progress: renewed as the request runs; past it, the key counts as abandoned.
    locked_until: Mapped[datetime] = mapped_column(UTCDateTime)
    status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    # [[name, value], ...]: the few response headers a replay repeats.
    response_headers: Mapped[list[list[str]] | None] = mapped_column(JSON, default=None)
    response_body: Mapped[bytes | None] = mapped_column(LargeBinary, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


def project_column() -> Mapped[uuid.UUID]:
    # No default: a row created without its caller's project fails instead of landing in one.
    return mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)


class ModelRow(Base):
    __tablename__ = "models"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    project_id: Mapped[uuid.UUID] = project_column()
    name: Mapped[str] = mapped_column(String(200))
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    seed: Mapped[int] = mapped_column(BigInteger)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON)
    compile_config: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    # The checkpoint whose weights the model holds now; null means the seeded initial weights.
    weights_checkpoint_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    weights_key: Mapped[str | None] = mapped_column(String(500), default=None)
    # Bytes of the weights file the model holds when it is not a checkpoint's (an upload, an
    # import, train_on_batch): counted in the project's stored bytes.
    weights_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class JobRow(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        # At most one queued or running job per model, whatever races the API loses.
        Index(
            "uq_jobs_one_active_per_model",
            "model_id",
            unique=True,
            postgresql_where=text("status IN ('queued', 'running')"),
            sqlite_where=text("status IN ('queued', 'running')"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    model_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("models.id", ondelete="CASCADE"), index=True
    )
    # Always its model's project (kept here so a job is scoped without a join).
    project_id: Mapped[uuid.UUID] = project_column()
    kind: Mapped[str] = mapped_column(String(20), default="fit")
    status: Mapped[str] = mapped_column(String(20), default=JobStatus.queued, index=True)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    lease_owner: Mapped[str | None] = mapped_column(String(200), default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    data_key: Mapped[str] = mapped_column(String(500))
    # Bytes of the job's inputs file (counted in its project's stored bytes; a resumed job
    # shares its parent's file and counts 0).
    inputs_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    base_weights_key: Mapped[str | None] = mapped_column(String(500), default=None)
    epochs: Mapped[int] = mapped_column(Integer)
    epochs_done: Mapped[int] = mapped_column(Integer, default=0)
    error_type: Mapped[str | None] = mapped_column(String(200), default=None)
    error_message: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    dispatched_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When the message that should start the job's next attempt was sent, while nobody has
    # claimed it (null: no message is pending). The reaper sends no second one meanwhile.
    pending_dispatch_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # A job resumed from another job's checkpoint: that job (null once it is gone) and the
    # checkpoint whose full training state it starts from.
    parent_job_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="SET NULL"), default=None, index=True
    )
    start_checkpoint_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    # What a finished predict or evaluate job produced: evaluate's logs, or the dataset that
    # holds a predict job's outputs (one array per output).
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    result_dataset_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)


class EpochLogRow(Base):
    __tablename__ = "epoch_logs"

    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    logs: Mapped[dict[str, float | None]] = mapped_column(JSON)
    attempt: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class CheckpointRow(Base):
    __tablename__ = "checkpoints"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    epoch: Mapped[int] = mapped_column(Integer)
    attempt: Mapped[int] = mapped_column(Integer)
    key: Mapped[str] = mapped_column(String(500))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    logs: Mapped[dict[str, float | None]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # What wrote it: "periodic", "final" or "model_checkpoint" (a ModelCheckpoint callback).
    trigger: Mapped[str] = mapped_column(String(20), default="periodic", server_default="periodic")
    # The 0-based batch of a mid-epoch save (ModelCheckpoint's save_freq); None at an epoch end.
    batch: Mapped[int | None] = mapped_column(Integer, default=None)
    # The monitor and mode (min or max) that select the job's `best` checkpoint, when the job
    # has a ModelCheckpoint callback.
    monitor: Mapped[str | None] = mapped_column(String(200), default=None)
    mode: Mapped[str | None] = mapped_column(String(8), default=None)


class DatasetRow(Base):
    """Arrays uploaded once (or written by a predict job), stored as one `.npy` file each under
    `datasets/<id>/`; immutable: a dataset's files never change once its row exists."""

    __tablename__ = "datasets"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    project_id: Mapped[uuid.UUID] = project_column()
    name: Mapped[str | None] = mapped_column(String(200), default=None)
    description: Mapped[str | None] = mapped_column(Text, default=None)
    # How it came: the upload format (npy, npz, csv, parquet, json), or "predict" for a job's
    # outputs.
    format: Mapped[str] = mapped_column(String(20))
    # Of the bytes uploaded (for a predict job's outputs: of its `.npy` files in name order).
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    # Bytes of its arrays as stored (what a compressed or CSV upload became): counted in its
    # project's stored bytes.
    stored_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Per array: name, dtype, shape, nbytes, min, max (and columns, from CSV and Parquet).
    arrays: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    source_job_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class JobDatasetRow(Base):
    """The datasets a job reads, with the sha256 each had when the job was submitted: a dataset
    is not deleted while a queued or running job reads it."""

    __tablename__ = "job_datasets"

    job_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True
    )
    dataset_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    sha256: Mapped[str] = mapped_column(String(64))


class WebhookRow(Base):
    """A URL of a project that receives signed job events (app.webhooks)."""

    __tablename__ = "webhooks"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    project_id: Mapped[uuid.UUID] = project_column()
    url: Mapped[str] = mapped_column(String(2048))
    # Event names, e.g. ["job.succeeded", "job.failed"].
    events: Mapped[list[str]] = mapped_column(JSON)
    # The HMAC key deliveries are signed with: kept as it is, since signing needs it.
    secret: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    description: Mapped[str | None] = mapped_column(String(200), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class WebhookDeliveryRow(Base):
    """One event for one webhook (an outbox row written in the transaction of the change it
    reports), and how sending it went."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    webhook_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("webhooks.id", ondelete="CASCADE"), index=True
    )
    event: Mapped[str] = mapped_column(String(40))
    # No foreign key: a delivery outlives the job it reports (a deleted model's jobs).
    job_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, default=None, index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    # pending, delivered or failed (given up after WEBHOOK_MAX_ATTEMPTS).
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # When a sender may take it next (null once delivered or given up).
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=utcnow)
    last_status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    last_error: Mapped[str | None] = mapped_column(String(500), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
