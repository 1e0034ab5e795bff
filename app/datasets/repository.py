"""All SQL of the datasets domain: dataset rows, and the datasets each job reads. Functions
take a session and never commit: the caller's unit of work does."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from app.db.models import DatasetRow, JobDatasetRow, JobRow, JobStatus
from app.db.scope import Scope

ACTIVE = (JobStatus.queued, JobStatus.running)


def add_dataset(session: Session, *, row: DatasetRow) -> DatasetRow:
    session.add(row)
    session.flush()
    return row


def get_dataset(session: Session, *, dataset_id: uuid.UUID, scope: Scope) -> DatasetRow | None:
    return session.scalars(
        select(DatasetRow).where(DatasetRow.id == dataset_id, scope.where(DatasetRow.project_id))
    ).first()


def lock_datasets(
    session: Session, *, dataset_ids: Iterable[uuid.UUID], scope: Scope
) -> list[DatasetRow]:
    """The datasets of `dataset_ids` that still exist, share-locked until commit (Postgres;
    SQLite serialises writers anyway): a delete cannot slip between the check of a job's
    references and the commit of the job that reads them."""
    ids = sorted(set(dataset_ids))
    if not ids:
        return []
    return list(session.scalars(
        select(DatasetRow).where(DatasetRow.id.in_(ids), scope.where(DatasetRow.project_id))
        .order_by(DatasetRow.id)
        .with_for_update(read=True)
    ).all())  # fmt: skip


def get_dataset_for_update(
    session: Session, *, dataset_id: uuid.UUID, scope: Scope
) -> DatasetRow | None:
    return session.scalars(
        select(DatasetRow)
        .where(DatasetRow.id == dataset_id, scope.where(DatasetRow.project_id))
        .with_for_update()
    ).first()


def list_datasets(
    session: Session, *, scope: Scope, limit: int, offset: int, sha256: str | None = None
) -> tuple[Sequence[DatasetRow], int]:
    visible = [scope.where(DatasetRow.project_id)]
    if sha256 is not None:  # the indexed column: how a client finds bytes it already sent
        visible.append(DatasetRow.sha256 == sha256)
    rows = session.scalars(
        select(DatasetRow)
        .where(*visible)
        .order_by(DatasetRow.created_at.desc(), DatasetRow.id)
        .limit(limit)
        .offset(offset)
    ).all()
    total = session.scalar(select(func.count()).select_from(DatasetRow).where(*visible)) or 0
    return rows, total


def delete_dataset(session: Session, *, dataset_id: uuid.UUID) -> None:
    session.execute(delete(DatasetRow).where(DatasetRow.id == dataset_id))


def active_jobs_reading(session: Session, *, dataset_id: uuid.UUID) -> list[uuid.UUID]:
    """Queued or running jobs that read the dataset."""
    return list(session.scalars(
        select(JobRow.id).join(JobDatasetRow, JobDatasetRow.job_id == JobRow.id)
        .where(JobDatasetRow.dataset_id == dataset_id, JobRow.status.in_(ACTIVE))
        .order_by(JobRow.created_at)
    ).all())  # fmt: skip


def link_job(session: Session, *, job_id: uuid.UUID, datasets: dict[uuid.UUID, str]) -> None:
    """Record the datasets (id -> sha256) a job reads."""
    for dataset_id, sha in sorted(datasets.items()):
        session.add(JobDatasetRow(job_id=job_id, dataset_id=dataset_id, sha256=sha))
    session.flush()


def datasets_of_job(session: Session, *, job_id: uuid.UUID) -> dict[uuid.UUID, str]:
    rows = session.scalars(select(JobDatasetRow).where(JobDatasetRow.job_id == job_id)).all()
    return {r.dataset_id: r.sha256 for r in rows}
