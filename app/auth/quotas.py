"""Per-project quotas: the QUOTA_* settings, overridden per project by an admin. Domains call
`require_room` in the unit of work that adds the resource; it locks the project row, so two
requests of one project cannot both take the last unit."""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from app.auth import repository as repo
from app.auth.schemas import QuotaValues
from app.core.config import Settings
from app.core.errors import QuotaExceeded
from app.db.models import ProjectRow
from app.db.usage import project_usage, running_jobs

# Queued jobs free up on their own: a client may retry after this many seconds.
QUEUED_RETRY_AFTER_S = 10


def limits(settings: Settings, project: ProjectRow | None) -> QuotaValues:
    own = dict(project.quotas) if project is not None else {}
    return QuotaValues(
        models=int(own.get("models", settings.quota_models)),
        queued_jobs=int(own.get("queued_jobs", settings.quota_queued_jobs)),
        running_jobs=int(own.get("running_jobs", settings.quota_running_jobs)),
        stored_bytes=int(own.get("stored_bytes", settings.quota_stored_bytes)),
        requests_per_s=float(own.get("requests_per_s", settings.quota_requests_per_s)),
    )


def require_room(
    session: Session,
    *,
    settings: Settings,
    project_id: uuid.UUID,
    models: int = 0,
    queued_jobs: int = 0,
    stored_bytes: int = 0,
) -> None:
    """Raise QuotaExceeded unless the project can add this much. Stored bytes are checked
    against what is stored now plus `stored_bytes` (a job's checkpoints are not known before
    it runs: a project at or over its bytes cannot start one)."""
    project = repo.lock_project(session, project_id=project_id)
    limit = limits(settings, project)
    used = project_usage(session, project_id=project_id)
    if models and used.models + models > limit.models:
        raise QuotaExceeded(quota="models", limit=limit.models, used=used.models)
    if queued_jobs and used.queued_jobs + queued_jobs > limit.queued_jobs:
        raise QuotaExceeded(quota="queued_jobs", limit=limit.queued_jobs, used=used.queued_jobs,
                            status_code=429, retry_after_s=QUEUED_RETRY_AFTER_S)  # fmt: skip
    if queued_jobs and used.stored_bytes >= limit.stored_bytes:
        raise QuotaExceeded(quota="stored_bytes", limit=limit.stored_bytes,
                            used=used.stored_bytes)  # fmt: skip
    if stored_bytes and used.stored_bytes + stored_bytes > limit.stored_bytes:
        raise QuotaExceeded(quota="stored_bytes", limit=limit.stored_bytes,
                            used=used.stored_bytes)  # fmt: skip


def stored_bytes_left(session: Session, *, settings: Settings, project_id: uuid.UUID) -> int:
    """How many more bytes the project may store (0 at or over its quota)."""
    limit = limits(settings, repo.get_project(session, project_id=project_id)).stored_bytes
    return max(0, limit - project_usage(session, project_id=project_id).stored_bytes)


def may_run_another(session: Session, *, settings: Settings, project_id: uuid.UUID) -> bool:
    """Whether a worker may start one more of the project's jobs now."""
    limit = limits(settings, repo.lock_project(session, project_id=project_id))
    return running_jobs(session, project_id=project_id) < limit.running_jobs
