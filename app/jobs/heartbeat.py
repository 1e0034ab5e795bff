"""The lease heartbeat of a running attempt, which also brings the job's cancel flag, and the
reasons an attempt leaves its work early (lost, cancelled, stopping)."""

from __future__ import annotations

import logging
import threading
import uuid

from app.db.session import unit_of_work
from app.jobs import repository as repo
from app.runtime import metrics
from app.runtime.context import AppContext

log = logging.getLogger(__name__)

LOST = "lost"
CANCELLED = "cancelled"
STOPPING = "stopping"  # the process shuts down: the job is given back, not ended


class Heartbeat(threading.Thread):
    """Renews the lease every `interval` seconds. Sets `cancelled` when the job's cancel flag is
    up and `lost` when another attempt owns the job."""

    def __init__(self, ctx: AppContext, job_id: uuid.UUID, attempt: int) -> None:
        super().__init__(name=f"heartbeat-{job_id}", daemon=True)
        self.ctx, self.job_id, self.attempt = ctx, job_id, attempt
        self.cancelled = threading.Event()
        self.lost = threading.Event()
        self._stop_event = threading.Event()

    def beat(self) -> None:
        settings = self.ctx.settings
        with unit_of_work(self.ctx.sessions) as session:
            flag = repo.renew_lease(
                session, job_id=self.job_id, attempt=self.attempt, lease_s=settings.job_lease_s
            )
        if flag is None:
            self.lost.set()
            return
        metrics.heartbeat()
        if flag:
            self.cancelled.set()

    def run(self) -> None:
        while not self._stop_event.wait(self.ctx.settings.job_heartbeat_s):
            try:
                self.beat()
            except Exception:  # a database hiccup: the next beat tries again
                log.exception("heartbeat for job %s failed", self.job_id)
            if self.lost.is_set():
                return

    def stop(self) -> None:
        self._stop_event.set()

    def interruption(self) -> str | None:
        if self.lost.is_set():
            return LOST
        if self.cancelled.is_set():
            return CANCELLED
        if self.ctx.stopping.is_set():
            return STOPPING
        return None
