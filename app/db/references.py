"""Which artifacts the rows reference, for the sweeper: a read-only query over every domain's
tables, kept here, below the domains, because a file one domain wrote may be referenced by
another's row (a model's weights are a fit's final checkpoint; a job starts from a model's file
or from another job's checkpoint and inputs)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import CompoundSelect, select, union_all
from sqlalchemy.orm import Session

from app.db.models import CheckpointRow, DatasetRow, JobRow, ModelRow


@dataclass(frozen=True)
class References:
    # Artifact keys of single files: models' weights, jobs' inputs and base weights, checkpoints.
    keys: frozenset[str]
    # Datasets, each a folder of files (uploads and predict jobs' outputs alike).
    dataset_ids: frozenset[str]


def referenced_artifacts(session: Session) -> References:
    # One statement, so one snapshot: a key copied from one row into another (a job taking its
    # model's file, a resume taking its parent's checkpoint) is seen in one of the two, whatever
    # commits while the statement runs.
    keys: CompoundSelect[tuple[str | None]] = union_all(
        select(ModelRow.weights_key.label("key")).where(ModelRow.weights_key.is_not(None)),
        select(JobRow.data_key),
        select(JobRow.base_weights_key).where(JobRow.base_weights_key.is_not(None)),
        select(CheckpointRow.key),
    )
    found = frozenset(str(k) for k in session.scalars(select(keys.subquery().c.key)))
    # Datasets' folders are never copied into another row, so a second statement is safe.
    ids = frozenset(str(i) for i in session.scalars(select(DatasetRow.id)))
    return References(keys=found, dataset_ids=ids)
