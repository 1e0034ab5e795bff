"""What ties a running fit to the database: the lease heartbeat (which also brings the cancel
flag) and the callback that commits each epoch's logs and periodic checkpoints, all fenced by
the attempt number."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from typing import Any

from app.db.models import CheckpointRow
from app.db.session import unit_of_work
from app.engine import checkpoint
from app.engine.callbacks import Callback, Logs
from app.engine.errors import TrainingInterrupted
from app.jobs import repository as repo
from app.jobs.context import JobsContext
from app.jobs.storage import checkpoint_key

log = logging.getLogger(__name__)

LOST = "lost"
CANCELLED = "cancelled"


class Heartbeat(threading.Thread):
    """Renews the lease every `interval` seconds. Sets `cancelled` when the job's cancel flag is
    up and `lost` when another attempt owns the job."""

    def __init__(self, ctx: JobsContext, job_id: uuid.UUID, attempt: int) -> None:
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
        elif flag:
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
        return None


def save_checkpoint(
    ctx: JobsContext,
    *,
    job_id: uuid.UUID,
    attempt: int,
    epoch: int,
    logs: dict[str, float],
    tensors: dict[str, Any],
    meta: dict[str, Any],
) -> CheckpointRow | None:
    """Write the file atomically, then register it (fenced). None if the attempt is stale."""
    key = checkpoint_key(job_id, attempt, epoch)
    size = ctx.store.write(key, checkpoint.to_bytes(tensors, {**meta, "logs": logs}))
    row = CheckpointRow(job_id=job_id, epoch=epoch, attempt=attempt, key=key, size_bytes=size,
                        logs=logs)  # fmt: skip
    with unit_of_work(ctx.sessions) as session:
        if not repo.add_checkpoint(session, row=row):
            return None
    return row


class Recorder(Callback):
    """Commits each epoch's logs as the epoch ends, checkpoints every `checkpoint_every_s`, and
    leaves the fit between batches when the job is cancelled or taken over."""

    def __init__(
        self, ctx: JobsContext, job_id: uuid.UUID, attempt: int, heartbeat: Heartbeat,
        static_meta: dict[str, Any],
    ) -> None:  # fmt: skip
        self.ctx, self.job_id, self.attempt, self.heartbeat = ctx, job_id, attempt, heartbeat
        self.static_meta = static_meta
        self.last_checkpoint = time.monotonic()

    def _check(self) -> None:
        reason = self.heartbeat.interruption()
        if reason is not None:
            raise TrainingInterrupted(reason)

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        self._check()

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        values = dict(logs or {})
        with unit_of_work(self.ctx.sessions) as session:
            owned = repo.record_epoch(
                session, job_id=self.job_id, attempt=self.attempt, epoch=epoch, logs=values
            )
        if not owned:
            raise TrainingInterrupted(LOST)
        every = self.ctx.settings.checkpoint_every_s
        if time.monotonic() - self.last_checkpoint >= every and not self.trainer.stop_training:
            tensors, meta = self.trainer.state()
            if save_checkpoint(self.ctx, job_id=self.job_id, attempt=self.attempt, epoch=epoch,
                               logs=values, tensors=tensors,
                               meta={**self.static_meta, **meta}) is None:  # fmt: skip
                raise TrainingInterrupted(LOST)
            self.last_checkpoint = time.monotonic()
        self._check()
