"""What ties a running fit to the database: the lease heartbeat (which also brings the cancel
flag) and the callback that commits each epoch's logs, periodic checkpoints and the saves of
the job's ModelCheckpoint callbacks, all fenced by the attempt number; it also publishes the
fit's per-batch progress."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from sqlalchemy import Connection
from sqlalchemy.orm import Session

from app.db.models import CheckpointRow
from app.db.session import unit_of_work
from app.engine.callbacks import Callback, Logs, ModelCheckpoint, ProgressReporter
from app.engine.config.errors import TrainingInterrupted
from app.engine.training import checkpoint
from app.jobs import repository as repo
from app.jobs.failures import retried
from app.runtime import metrics
from app.runtime.context import AppContext
from app.runtime.jsonsafe import safe_logs
from app.runtime.progress import Publisher
from app.runtime.storage import checkpoint_key

if TYPE_CHECKING:
    from app.engine.training.trainer import Trainer

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


def write_checkpoint(
    ctx: AppContext,
    *,
    job_id: uuid.UUID,
    attempt: int,
    epoch: int,
    logs: dict[str, float | None],
    tensors: dict[str, Any],
    meta: dict[str, Any],
    trigger: str = "periodic",
    batch: int | None = None,
    selection: tuple[str, str] | None = None,
) -> CheckpointRow:
    """Write the file atomically and return its row, not yet registered: the caller registers
    it (fenced) in the transaction it belongs to. `selection` is the (monitor, mode) that
    selects the job's `best` checkpoint; a checkpoint whose meta says `final` is the final
    one."""
    final = bool(meta.get("final"))
    trigger = "final" if final else trigger
    key = checkpoint_key(job_id, attempt, epoch, batch=batch, final=final)
    extra = {} if batch is None else {"batch": batch}
    with metrics.CHECKPOINT_SECONDS.time():
        size = ctx.store.write(key, checkpoint.to_bytes(tensors, {**meta, **extra, "logs": logs}))
    monitor, mode = selection or (None, None)
    return CheckpointRow(job_id=job_id, epoch=epoch, attempt=attempt, key=key, size_bytes=size,
                         logs=logs, trigger=trigger, batch=batch, monitor=monitor,
                         mode=mode)  # fmt: skip


def unsaved_copy(row: CheckpointRow) -> CheckpointRow:
    """The row as write_checkpoint made it, for another try at registering it (a failed
    transaction leaves its row object unusable)."""
    columns = CheckpointRow.__table__.columns
    return CheckpointRow(**{c.key: getattr(row, c.key) for c in columns
                            if c.key != "id" and getattr(row, c.key) is not None})  # fmt: skip


class EpochWriter(threading.Thread):
    """Commits epoch rows from a queue, in order, so training does not wait on the database.

    A row is committed within milliseconds of its epoch's end (several at once, in one
    transaction, when epochs come faster than commits). `flush()` waits until everything
    submitted is committed; it raises TrainingInterrupted if the attempt turned out stale."""

    def __init__(self, ctx: AppContext, job_id: uuid.UUID, attempt: int) -> None:
        super().__init__(name=f"epoch-writer-{job_id}", daemon=True)
        self.ctx, self.job_id, self.attempt = ctx, job_id, attempt
        self.queue: queue.Queue[tuple[int, dict[str, float | None]] | None] = queue.Queue()
        self.lost = threading.Event()
        self.failed = threading.Event()
        self.error: BaseException | None = None
        self._first = True
        self._conn: Connection | None = None

    def submit(self, epoch: int, logs: dict[str, float | None]) -> None:
        self.queue.put((epoch, logs))

    def _write(self, items: list[tuple[int, dict[str, float | None]]]) -> None:
        for attempt in range(5):
            try:
                # One connection for the whole fit: a pool checkout (with its liveness ping)
                # per epoch would cost more than the write itself.
                if self._conn is None:
                    self._conn = self.ctx.engine.connect()
                with unit_of_work(lambda: Session(bind=self._conn)) as session:
                    written = repo.record_epochs(
                        session, job_id=self.job_id, attempt=self.attempt, rows=items,
                        first_of_attempt=self._first,
                    )  # fmt: skip
                if not written:
                    self.lost.set()
                    return
                self._first = False
                return
            except Exception as exc:  # a database hiccup: reconnect and retry, then give up
                log.warning("writing epoch rows of job %s failed (%s); retrying", self.job_id, exc)
                self.error = exc
                self._disconnect()
                time.sleep(0.2 * 2**attempt)
        self.failed.set()  # the error is not going away: the job fails with it

    def _disconnect(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def run(self) -> None:
        while True:
            item = self.queue.get()
            items = []
            done = item is None
            if item is not None:
                items.append(item)
            while not done:
                try:
                    more = self.queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    done = True
                else:
                    items.append(more)
            if items and not (self.lost.is_set() or self.failed.is_set()):
                self.error = None
                self._write(items)
            for _ in range(len(items) + (1 if done else 0)):
                self.queue.task_done()
            if done:
                self._disconnect()
                return

    def flush(self) -> None:
        self.queue.join()
        self.check()

    def check(self) -> None:
        if self.lost.is_set():
            raise TrainingInterrupted(LOST)
        if self.failed.is_set() and self.error is not None:
            raise self.error

    def close(self) -> None:
        self.queue.put(None)


class Recorder(Callback):
    """Commits each epoch's logs as the epoch ends, checkpoints every `checkpoint_every_s` and
    whenever a watched ModelCheckpoint saves, publishes progress, and leaves the fit between
    batches when the job is cancelled or taken over. It runs after the job's own callbacks, so
    it sees what they added to the logs and writes their saves in the same hook."""

    def __init__(
        self, ctx: AppContext, job_id: uuid.UUID, attempt: int, heartbeat: Heartbeat,
        static_meta: dict[str, Any],
    ) -> None:  # fmt: skip
        self.ctx, self.job_id, self.attempt, self.heartbeat = ctx, job_id, attempt, heartbeat
        self.static_meta = static_meta
        self.last_checkpoint = time.monotonic()
        self.writer = EpochWriter(ctx, job_id, attempt)
        self.writer.start()
        self.checkpoints: list[ModelCheckpoint] = []
        self.selection: tuple[str, str] | None = None  # (monitor, mode) that selects `best`
        self.progress: ProgressReporter | None = None
        self._save_requested = False
        self._epoch = 0
        self._epochs = 0
        self.clock = metrics.EpochClock()
        # The training state at the last epoch's end (copied: the fit's end may change the
        # weights), which the final checkpoint keeps for resuming.
        self.end_state: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None

    def watch(self, callbacks: Sequence[Callback], *, epochs: int) -> None:
        """Make the saves of the ModelCheckpoint callbacks among `callbacks` checkpoint rows
        (the first one's monitor and mode select `best`) and publish per-batch progress."""
        self._epochs = epochs
        self.checkpoints = [cb for cb in callbacks if isinstance(cb, ModelCheckpoint)]
        for cb in self.checkpoints:
            cb.sink = self._request_save
        self.progress = ProgressReporter(
            Publisher(self.ctx.progress, self.job_id, self.attempt), epochs=epochs,
            min_interval_s=self.ctx.settings.events_progress_s,
        )  # fmt: skip

    def _request_save(self, epoch: int, logs: Logs, batch: int | None) -> None:
        # Written in this recorder's own hook, which follows: the epoch row goes first.
        self._save_requested = True

    def set_trainer(self, trainer: Trainer) -> None:
        super().set_trainer(trainer)
        if self.progress is not None:
            self.progress.set_trainer(trainer)

    def on_train_begin(self, logs: Logs | None = None) -> None:
        if self.checkpoints:
            first = self.checkpoints[0]
            self.selection = (first.monitor, first.resolved_mode())
        if self.progress is not None:
            self.progress.on_train_begin(logs)

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        self._epoch = epoch
        self.clock.begin(self.trainer.batches)
        if self.progress is not None:
            self.progress.on_epoch_begin(epoch, logs)

    def _save(self, epoch: int, values: dict[str, float | None], trigger: str,
              batch: int | None = None) -> None:  # fmt: skip
        tensors, meta = self.trainer.state()
        row = retried(lambda: write_checkpoint(
            self.ctx, job_id=self.job_id, attempt=self.attempt, epoch=epoch, logs=values,
            tensors=tensors, meta={**self.static_meta, **meta}, trigger=trigger, batch=batch,
            selection=self.selection,
        ), what=f"writing a checkpoint of job {self.job_id}")  # fmt: skip
        keep = self.ctx.settings.checkpoint_keep

        def register() -> list[str]:  # a fresh row and transaction per try
            fresh = unsaved_copy(row)
            with unit_of_work(self.ctx.sessions) as session:
                if not repo.add_checkpoint(session, row=fresh):
                    raise TrainingInterrupted(LOST)
                if keep and trigger == "periodic":
                    return repo.prune_periodic(session, job_id=self.job_id, keep=keep)
            return []

        pruned = retried(register, what=f"registering a checkpoint of job {self.job_id}")
        for key in pruned:  # unregistered first: a reader finds no row, or a 409 for the file
            try:
                self.ctx.store.delete_prefix(key)
            except OSError:
                log.warning("could not delete the pruned checkpoint file %s", key, exc_info=True)
        self.last_checkpoint = time.monotonic()

    def _check(self) -> None:
        self.writer.check()
        # A shutdown stops the fit between batches: the job is given back and resumes from
        # its last epoch-end checkpoint on another worker (a mid-epoch state is no resume
        # point: an epoch end reached while stopping is checkpointed first, see on_epoch_end).
        reason = self.heartbeat.interruption()
        if reason is not None:
            raise TrainingInterrupted(reason)

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        if self._save_requested:  # a mid-epoch ModelCheckpoint save (never a resume point)
            self._save_requested = False
            self._save(self._epoch, safe_logs(dict(logs or {})), "model_checkpoint", batch)
        if self.progress is not None:
            self.progress.on_train_batch_end(batch, logs)
        self._check()

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        values = safe_logs(dict(logs or {}))
        self.writer.submit(epoch, values)
        self.clock.end(self.trainer.batches)
        if epoch == self._epochs - 1 or self.trainer.stop_training:  # the fit's last epoch
            tensors, meta = self.trainer.state()
            self.end_state = ({k: t.clone() for k, t in tensors.items()}, meta)
        every = self.ctx.settings.checkpoint_every_s
        due = time.monotonic() - self.last_checkpoint >= every and not self.trainer.stop_training
        # Stopping for a shutdown at an epoch end: this epoch is the resume point.
        due = due or (self.ctx.stopping.is_set() and epoch < self._epochs - 1)
        if due or self._save_requested:
            # Rows up to this epoch are committed before the checkpoint that follows them.
            self.writer.flush()
            self._save(epoch, values, "model_checkpoint" if self._save_requested else "periodic")
            self._save_requested = False
        self._check()
