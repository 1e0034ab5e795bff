"""CheckpointSaver: the callback that checkpoints a fit every `checkpoint_every_s`, at the epoch
end a shutdown stops at, and whenever one of the job's ModelCheckpoint callbacks saves, each
file written atomically and registered fenced by the attempt number; it keeps the training state
at the fit's last epoch end for the final checkpoint. Also the checkpoint file and row helpers
the runner's final checkpoint uses."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace

from app.db.models import CheckpointRow
from app.db.session import unit_of_work
from app.engine.callbacks import Callback, Logs, ModelCheckpoint
from app.engine.config.errors import TrainingInterrupted
from app.engine.training.checkpoint import Checkpoint, CheckpointInfo
from app.engine.training.state import LoopState
from app.jobs import repository as repo
from app.jobs.callbacks.attempt import AttemptContext
from app.jobs.failures import retried
from app.jobs.heartbeat import LOST
from app.runtime import metrics
from app.runtime.context import AppContext
from app.runtime.jsonsafe import safe_logs
from app.runtime.storage import checkpoint_key

log = logging.getLogger(__name__)


def write_checkpoint(
    ctx: AppContext,
    *,
    job_id: uuid.UUID,
    attempt: int,
    epoch: int,
    ckpt: Checkpoint,
    trigger: str = "periodic",
    selection: tuple[str, str] | None = None,
) -> CheckpointRow:
    """Write the file atomically and return its row, not yet registered: the caller registers
    it (fenced) in the transaction it belongs to. `selection` is the (monitor, mode) that
    selects the job's `best` checkpoint; a checkpoint whose info says `final` is the final
    one, one with a `batch` a mid-epoch save."""
    info = ckpt.info
    trigger = "final" if info.final else trigger
    key = checkpoint_key(job_id, attempt, epoch, batch=info.batch, final=info.final)
    with metrics.CHECKPOINT_SECONDS.time():
        size = ctx.store.write(key, ckpt.to_bytes())
    monitor, mode = selection or (None, None)
    return CheckpointRow(job_id=job_id, epoch=epoch, attempt=attempt, key=key, size_bytes=size,
                         logs=info.logs or {}, trigger=trigger, batch=info.batch,
                         monitor=monitor, mode=mode)  # fmt: skip


def unsaved_copy(row: CheckpointRow) -> CheckpointRow:
    """The row as write_checkpoint made it, for another try at registering it (a failed
    transaction leaves its row object unusable)."""
    columns = CheckpointRow.__table__.columns
    return CheckpointRow(**{c.key: getattr(row, c.key) for c in columns
                            if c.key != "id" and getattr(row, c.key) is not None})  # fmt: skip


class CheckpointSaver(Callback):
    """Checkpoints the fit at an epoch end every `checkpoint_every_s` (not at the fit's last:
    the final checkpoint follows it), at the epoch end a shutdown stops at (the resume point),
    and after each save of the ModelCheckpoint callbacks it is given (whose sink it becomes;
    the first one's monitor and mode select the job's `best` checkpoint). A save is written in
    this callback's own hook, so it follows the job's callbacks listed before it; before an
    epoch-end checkpoint, `flush_epochs` commits the epoch rows up to it."""

    def __init__(
        self, attempt: AttemptContext, *, info: CheckpointInfo, epochs: int,
        model_checkpoints: Sequence[ModelCheckpoint], flush_epochs: Callable[[], None],
    ) -> None:  # fmt: skip
        # `info`: what every checkpoint of the job says about itself (configs, job id).
        self.attempt, self.info, self.epochs = attempt, info, epochs
        self.flush_epochs = flush_epochs
        self.model_checkpoints = list(model_checkpoints)
        for cb in self.model_checkpoints:
            cb.set_sink(self._request_save)
        self.selection: tuple[str, str] | None = None  # (monitor, mode) that selects `best`
        self.last_checkpoint = time.monotonic()
        # The training state at the last epoch's end (copied: the fit's end may change the
        # weights), which the final checkpoint keeps for resuming.
        self.end_state: LoopState | None = None
        self._save_requested = False
        self._epoch = 0

    def _request_save(self, epoch: int, logs: Logs, batch: int | None) -> None:
        # Written in this callback's own hook, which follows: the epoch row goes first.
        self._save_requested = True

    def on_train_begin(self, logs: Logs | None = None) -> None:
        if self.model_checkpoints:
            first = self.model_checkpoints[0]
            self.selection = (first.monitor, first.resolved_mode())

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        self._epoch = epoch

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        if self._save_requested:  # a mid-epoch ModelCheckpoint save (never a resume point)
            self._save_requested = False
            self._save(self._epoch, safe_logs(dict(logs or {})), "model_checkpoint", batch)

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        trainer, ctx = self.trainer, self.attempt.ctx
        if epoch == self.epochs - 1 or trainer.stop_training:  # the fit's last epoch
            self.end_state = trainer.loop_state().clone()
        every = ctx.settings.checkpoint_every_s
        due = time.monotonic() - self.last_checkpoint >= every and not trainer.stop_training
        # Stopping for a shutdown at an epoch end: this epoch is the resume point.
        due = due or (ctx.stopping.is_set() and epoch < self.epochs - 1)
        if due or self._save_requested:
            # Rows up to this epoch are committed before the checkpoint that follows them.
            self.flush_epochs()
            values = safe_logs(dict(logs or {}))
            self._save(epoch, values, "model_checkpoint" if self._save_requested else "periodic")
            self._save_requested = False

    def _save(self, epoch: int, values: dict[str, float | None], trigger: str,
              batch: int | None = None) -> None:  # fmt: skip
        ctx, job_id, attempt = self.attempt.ctx, self.attempt.job_id, self.attempt.attempt
        ckpt = Checkpoint(self.trainer.loop_state(), replace(self.info, logs=values, batch=batch))
        row = retried(lambda: write_checkpoint(
            ctx, job_id=job_id, attempt=attempt, epoch=epoch, ckpt=ckpt, trigger=trigger,
            selection=self.selection,
        ), what=f"writing a checkpoint of job {job_id}")  # fmt: skip
        keep = ctx.settings.checkpoint_keep

        def register() -> list[str]:  # a fresh row and transaction per try
            fresh = unsaved_copy(row)
            with unit_of_work(ctx.sessions) as session:
                if not repo.add_checkpoint(session, row=fresh):
                    raise TrainingInterrupted(LOST)
                if keep and trigger == "periodic":
                    return repo.prune_periodic(session, job_id=job_id, keep=keep)
            return []

        pruned = retried(register, what=f"registering a checkpoint of job {job_id}")
        for key in pruned:  # unregistered first: a reader finds no row, or a 409 for the file
            try:
                ctx.store.delete_prefix(key)
            except OSError:
                log.warning("could not delete the pruned checkpoint file %s", key, exc_info=True)
        self.last_checkpoint = time.monotonic()
