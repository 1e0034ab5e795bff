"""All SQL of the models domain: model rows, and the jobs and checkpoints tables as models see
them (a model's active job, its most recent job, a job's checkpoints to take weights from, what
a delete removes). Functions take a session and never commit: the caller's unit of work does."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, bindparam, delete, func, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.models import CheckpointRow, EpochLogRow, JobRow, JobStatus, ModelRow
from app.db.scope import Scope

ACTIVE = (JobStatus.queued, JobStatus.running)


# -- models ------------------------------------------------------------------------------------
def add_model(session: Session, *, row: ModelRow) -> ModelRow:
    session.add(row)
    session.flush()
    return row


def get_model(session: Session, *, model_id: uuid.UUID, scope: Scope) -> ModelRow | None:
    return session.scalars(
        select(ModelRow).where(ModelRow.id == model_id, scope.where(ModelRow.project_id))
    ).first()


# What of a model changes after its creation (its config and seed never do): read on each
# predict, with a statement built once, to tell whether a row read earlier still holds.
MODEL_STATE = select(
    ModelRow.project_id,
    ModelRow.weights_key,
    ModelRow.weights_checkpoint_id,
    ModelRow.compile_config,
    ModelRow.updated_at,
).where(ModelRow.id == bindparam("model_id"))


def model_state(conn: Connection, *, model_id: uuid.UUID) -> Row[Any] | None:
    """The changing columns of a model (MODEL_STATE), whatever its project: the caller checks
    its scope."""
    return conn.execute(MODEL_STATE, {"model_id": model_id}).first()


def get_model_for_update(session: Session, *, model_id: uuid.UUID, scope: Scope) -> ModelRow | None:
    """The model row, locked until commit (Postgres; SQLite serialises writers anyway)."""
    return session.scalars(
        select(ModelRow)
        .where(ModelRow.id == model_id, scope.where(ModelRow.project_id))
        .with_for_update()
    ).first()


def list_models(
    session: Session, *, scope: Scope, limit: int, offset: int
) -> tuple[Sequence[ModelRow], int]:
    visible = scope.where(ModelRow.project_id)
    rows = session.scalars(
        select(ModelRow)
        .where(visible)
        .order_by(ModelRow.created_at.desc(), ModelRow.id)
        .limit(limit)
        .offset(offset)
    ).all()
    total = session.scalar(select(func.count()).select_from(ModelRow).where(visible)) or 0
    return rows, total


def delete_model(session: Session, *, model_id: uuid.UUID) -> None:
    job_ids = select(JobRow.id).where(JobRow.model_id == model_id)
    # Explicit deletes so SQLite without foreign-key cascades behaves like Postgres.
    session.execute(delete(EpochLogRow).where(EpochLogRow.job_id.in_(job_ids)))
    session.execute(delete(CheckpointRow).where(CheckpointRow.job_id.in_(job_ids)))
    session.execute(delete(JobRow).where(JobRow.model_id == model_id))
    session.execute(delete(ModelRow).where(ModelRow.id == model_id))


# -- the weights a model holds -----------------------------------------------------------------
def set_model_weights(
    session: Session,
    *,
    model_id: uuid.UUID,
    checkpoint_id: uuid.UUID,
    key: str,
    compile_config: dict[str, Any],
) -> None:
    session.execute(
        update(ModelRow)
        .where(ModelRow.id == model_id)
        .values(weights_checkpoint_id=checkpoint_id, weights_key=key, weights_bytes=0,
                compile_config=compile_config, updated_at=utcnow())
    )  # fmt: skip


def set_uploaded_weights(
    session: Session, *, model_id: uuid.UUID, key: str, size_bytes: int
) -> None:
    session.execute(
        update(ModelRow)
        .where(ModelRow.id == model_id)
        .values(weights_checkpoint_id=None, weights_key=key, weights_bytes=size_bytes,
                updated_at=utcnow())
    )  # fmt: skip


def set_compile_config(
    session: Session,
    *,
    model_id: uuid.UUID,
    compile_config: dict[str, Any],
    key: str | None,
    size_bytes: int,
) -> None:
    """A new compile spec, and the weights file `key` (the same weights, without the optimizer
    state of the spec before); where the weights come from does not change."""
    session.execute(
        update(ModelRow)
        .where(ModelRow.id == model_id)
        .values(
            compile_config=compile_config,
            weights_key=key,
            weights_bytes=size_bytes,
            updated_at=utcnow(),
        )
    )


def set_on_batch_weights(
    session: Session,
    *,
    model_id: uuid.UUID,
    key: str,
    compile_config: dict[str, Any],
    size_bytes: int,
) -> None:
    """Weights (and optimizer state) written by train_on_batch, under the spec it ran."""
    session.execute(
        update(ModelRow)
        .where(ModelRow.id == model_id)
        .values(weights_checkpoint_id=None, weights_key=key, compile_config=compile_config,
                weights_bytes=size_bytes, updated_at=utcnow())
    )  # fmt: skip


# -- a model's jobs and their checkpoints, as models see them -----------------------------------
def job_ids_of_model(session: Session, *, model_id: uuid.UUID) -> list[uuid.UUID]:
    return list(session.scalars(select(JobRow.id).where(JobRow.model_id == model_id)))


def active_job_of_model(session: Session, *, model_id: uuid.UUID) -> JobRow | None:
    return session.scalars(
        select(JobRow).where(JobRow.model_id == model_id, JobRow.status.in_(ACTIVE)).limit(1)
    ).first()


def active_job_starting_from(session: Session, *, model_id: uuid.UUID, key: str) -> JobRow | None:
    """A queued or running job of the model whose fit starts from weights file `key`."""
    return session.scalars(
        select(JobRow)
        .where(JobRow.model_id == model_id, JobRow.status.in_(ACTIVE),
               JobRow.base_weights_key == key)
        .limit(1)
    ).first()  # fmt: skip


def latest_job_of_model(session: Session, *, model_id: uuid.UUID) -> JobRow | None:
    """The model's most recent job (newest first, as the jobs listing orders them)."""
    return session.scalars(
        select(JobRow)
        .where(JobRow.model_id == model_id)
        .order_by(JobRow.created_at.desc(), JobRow.id)
        .limit(1)
    ).first()


def get_job(session: Session, *, job_id: uuid.UUID, scope: Scope) -> JobRow | None:
    return session.scalars(
        select(JobRow).where(JobRow.id == job_id, scope.where(JobRow.project_id))
    ).first()


def checkpoints_of_job(session: Session, *, job_id: uuid.UUID) -> Sequence[CheckpointRow]:
    return session.scalars(
        select(CheckpointRow).where(CheckpointRow.job_id == job_id).order_by(CheckpointRow.epoch)
    ).all()
