"""What the jobs domain reports to operators: `run_job`, the runner as the Celery task and the
local executor call it (the job's id on every log record of its run, and the job's duration
observed when this attempt ended it), and `JobsCollector`, the jobs by status and the queue
depth, computed when /metrics is scraped."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from app.core.logging import current, log_context
from app.db.models import JobStatus
from app.db.scope import SYSTEM
from app.db.session import unit_of_work
from app.jobs import repository as repo
from app.jobs.runner import run_fit_job
from app.runtime import metrics
from app.runtime.context import AppContext

log = logging.getLogger(__name__)


def run_job(ctx: AppContext, job_id: uuid.UUID) -> None:
    with log_context(job_id=job_id, attempt=None, worker=None):
        run_fit_job(ctx, job_id)
        attempt = current("attempt")  # bound by the runner once it claimed the job
        if attempt is not None:
            _observe_end(ctx, job_id, attempt)


def _observe_end(ctx: AppContext, job_id: uuid.UUID, attempt: int) -> None:
    try:
        with unit_of_work(ctx.sessions) as session:
            job = repo.get_job(session, job_id=job_id, scope=SYSTEM)
    except Exception:
        log.warning("could not read job %s for its metrics", job_id, exc_info=True)
        return
    # Ended by this attempt: a lost lease or a stop leaves it running for another one.
    if job is None or job.attempt != attempt or not JobStatus(job.status).is_terminal:
        return
    if job.started_at is None or job.finished_at is None:
        return
    seconds = (job.finished_at - job.started_at).total_seconds()
    metrics.JOB_SECONDS.labels(job.kind, str(job.status)).observe(max(0.0, seconds))
    log.info("job %s ended %s after %.3f s", job_id, job.status, seconds)


class JobsCollector(Collector):
    """`fitapi_jobs{status}` (every status, 0 included) from one GROUP BY, and
    `fitapi_queue_depth`, read at each scrape. A failing read leaves its metric out of that
    scrape and is logged, so the rest of the scrape still comes back."""

    def __init__(self, ctx: AppContext, queue_depth: Callable[[AppContext], int | None]) -> None:
        self.ctx, self.queue_depth = ctx, queue_depth

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("fitapi_jobs", "Jobs by status", labels=["status"])
        yield GaugeMetricFamily("fitapi_queue_depth", "Jobs dispatched and not yet taken")

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            with unit_of_work(self.ctx.sessions) as session:
                counts = repo.count_by_status(session)
        except Exception:
            log.warning("could not count jobs for the metrics", exc_info=True)
        else:
            jobs = GaugeMetricFamily("fitapi_jobs", "Jobs by status", labels=["status"])
            for status in JobStatus:
                jobs.add_metric([status.value], counts.get(status.value, 0))
            yield jobs
        try:
            depth = self.queue_depth(self.ctx)
        except Exception:
            log.warning("could not read the queue depth for the metrics", exc_info=True)
            depth = None
        if depth is not None:
            yield GaugeMetricFamily(
                "fitapi_queue_depth", "Jobs dispatched and not yet taken by a worker",
                value=depth,
            )  # fmt: skip
