"""The callbacks a fit job adds after the job's own, each with one job, listed in this order:
EpochLogSink (epoch rows), CheckpointSaver (checkpoints), ProgressPublisher (live progress),
CancellationCheck (leaving the fit when the attempt must stop)."""

from app.jobs.callbacks.attempt import AttemptContext
from app.jobs.callbacks.cancellation import CancellationCheck
from app.jobs.callbacks.checkpoints import CheckpointSaver, unsaved_copy, write_checkpoint
from app.jobs.callbacks.epoch_log import EpochLogSink, EpochWriter
from app.jobs.callbacks.progress import ProgressPublisher

__all__ = [
    "AttemptContext", "CancellationCheck", "CheckpointSaver", "EpochLogSink", "EpochWriter",
    "ProgressPublisher", "unsaved_copy", "write_checkpoint",
]  # fmt: skip
