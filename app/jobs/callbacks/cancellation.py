"""CancellationCheck: the callback that leaves a fit between batches, and at each epoch end,
when its attempt must stop: the job was cancelled, another attempt took it over, the process
shuts down, or its epoch rows could not be committed."""

from __future__ import annotations

from app.engine.callbacks import Callback, Logs
from app.engine.config.errors import TrainingInterrupted
from app.jobs.callbacks.epoch_log import EpochLogSink
from app.jobs.heartbeat import Heartbeat


class CancellationCheck(Callback):
    """Raises TrainingInterrupted with the heartbeat's reason (cancelled within about a
    heartbeat of the cancel; lost; stopping), or what the epoch log's writer failed with. Listed
    last, so a batch's or an epoch's saves and rows are handed on before the fit leaves.

    A shutdown stops the fit between batches: the job is given back and resumes from its last
    epoch-end checkpoint on another worker (a mid-epoch state is no resume point: an epoch end
    reached while stopping is checkpointed first, by CheckpointSaver)."""

    def __init__(self, heartbeat: Heartbeat, epoch_log: EpochLogSink) -> None:
        self.heartbeat, self.epoch_log = heartbeat, epoch_log

    def _check(self) -> None:
        self.epoch_log.check_rows()
        reason = self.heartbeat.interruption()
        if reason is not None:
            raise TrainingInterrupted(reason)

    def on_train_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        self._check()

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        self._check()
