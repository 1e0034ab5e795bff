"""The worker health check on a real broker and database: no worker answering and no live lease
on this host is unhealthy; a fresh lease held by a process of the host (a fit in the solo
pool, which answers no ping) is healthy, an expired one is not."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import update

from app.db.base import utcnow
from app.db.models import DEFAULT_PROJECT_ID, JobRow, ModelRow
from app.db.session import unit_of_work
from app.jobs import repository as repo
from app.models import repository as models_repo

# A host of its own: a worker of another test on this machine may answer for its real name.
HOST = f"health-test-{uuid.uuid4().hex[:8]}"


def _check(pg_ctx: Any, redis_url: str) -> int:
    env = {**os.environ, "DATABASE_URL": pg_ctx.settings.database_url, "REDIS_URL": redis_url}
    done = subprocess.run([sys.executable, "-m", "workers.health", "0.5", HOST], env=env,
                          capture_output=True, timeout=120, check=False)  # fmt: skip
    return done.returncode


def test_healthy_while_a_live_lease_is_held_on_this_host(pg_ctx: Any, redis_url: str) -> None:
    assert _check(pg_ctx, redis_url) == 1
    with unit_of_work(pg_ctx.sessions) as s:
        model = models_repo.add_model(
            s, row=ModelRow(name="m", config={}, seed=1, summary={}, project_id=DEFAULT_PROJECT_ID)
        )
        job = repo.add_job(s, row=JobRow(model_id=model.id, project_id=DEFAULT_PROJECT_ID,
                                         request={}, data_key="k", epochs=1))  # fmt: skip
        job_id = job.id
    with unit_of_work(pg_ctx.sessions) as s:
        owner = f"{HOST}:1:1"
        assert repo.claim_job(s, job_id=job_id, owner=owner, lease_s=60) == 1
        assert not repo.holds_live_lease(s, host="another-host", now=utcnow())
    assert _check(pg_ctx, redis_url) == 0
    with unit_of_work(pg_ctx.sessions) as s:
        s.execute(update(JobRow).where(JobRow.id == job_id)
                  .values(lease_expires_at=utcnow() - timedelta(seconds=1)))  # fmt: skip
    assert _check(pg_ctx, redis_url) == 1
