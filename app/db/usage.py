"""What a project uses, for its quotas and the admin's project listing: a read-only aggregate
over the domains' tables, kept here, below the domains, because each domain's quota check
needs all of it (a dataset upload counts the checkpoints' bytes too)."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.db.models import CheckpointRow, DatasetRow, JobRow, JobStatus, ModelRow


@dataclass(frozen=True)
class Usage:
    models: int
    queued_jobs: int
    running_jobs: int
    # Datasets as stored, jobs' inputs files, the models' own weights files, checkpoints.
    stored_bytes: int

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _count(session: Session, query: object) -> int:
    return int(session.scalar(query) or 0)  # type: ignore[call-overload]


def project_usage(session: Session, *, project_id: uuid.UUID) -> Usage:
    jobs = dict(
        session.execute(
            select(JobRow.status, func.count())
            .where(JobRow.project_id == project_id,
                   JobRow.status.in_((JobStatus.queued, JobStatus.running)))
            .group_by(JobRow.status)
        ).all()
    )  # fmt: skip
    datasets = select(func.coalesce(func.sum(DatasetRow.stored_bytes), 0)).where(
        DatasetRow.project_id == project_id
    )
    inputs = select(func.coalesce(func.sum(JobRow.inputs_bytes), 0)).where(
        JobRow.project_id == project_id
    )
    weights = select(func.coalesce(func.sum(ModelRow.weights_bytes), 0)).where(
        ModelRow.project_id == project_id
    )
    checkpoints = (
        select(func.coalesce(func.sum(CheckpointRow.size_bytes), 0))
        .join(JobRow, JobRow.id == CheckpointRow.job_id)
        .where(JobRow.project_id == project_id)
    )
    models = select(func.count()).select_from(ModelRow).where(ModelRow.project_id == project_id)
    return Usage(
        models=_count(session, models),
        queued_jobs=int(jobs.get(JobStatus.queued, 0)),
        running_jobs=int(jobs.get(JobStatus.running, 0)),
        stored_bytes=sum(_count(session, q) for q in (datasets, inputs, weights, checkpoints)),
    )


def running_jobs(session: Session, *, project_id: uuid.UUID) -> int:
    """The project's running jobs alone: what a worker's claim checks, without the sums over
    every stored job and checkpoint that `project_usage` adds (an index range on the running
    jobs, whatever the number of jobs the project has kept)."""
    return _count(
        session,
        select(func.count())
        .select_from(JobRow)
        .where(JobRow.project_id == project_id, JobRow.status == JobStatus.running),
    )
