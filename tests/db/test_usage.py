"""A worker's claim counts the project's running jobs alone (`running_jobs`), the same number
`project_usage` gives, without its sums over every stored job and checkpoint."""

from __future__ import annotations

from typing import Any

from app.db.models import DEFAULT_PROJECT_ID
from app.db.session import unit_of_work
from app.db.usage import project_usage, running_jobs
from tests.jobs.test_stream_rewrites import _claim, _job


def test_running_jobs_counts_what_project_usage_counts(pg_ctx: Any) -> None:
    def both() -> tuple[int, int]:
        with unit_of_work(pg_ctx.sessions) as s:
            return (running_jobs(s, project_id=DEFAULT_PROJECT_ID),
                    project_usage(s, project_id=DEFAULT_PROJECT_ID).running_jobs)  # fmt: skip

    assert both() == (0, 0)
    jobs = [_job(pg_ctx) for _ in range(3)]
    assert both() == (0, 0)  # queued jobs do not count
    _claim(pg_ctx, jobs[0])
    _claim(pg_ctx, jobs[1])
    assert both() == (2, 2)
