"""ProgressPublisher: the callback that publishes a fit's per-batch progress on the app's
progress bus (what the job's event stream relays), at most once per `events_progress_s`."""

from __future__ import annotations

from app.engine.callbacks import ProgressReporter
from app.jobs.callbacks.attempt import AttemptContext
from app.runtime.progress import Publisher


class ProgressPublisher(ProgressReporter):
    """The engine's ProgressReporter, emitting to the job's progress channel, with the
    attempt number on each event."""

    def __init__(self, attempt: AttemptContext, *, epochs: int) -> None:
        ctx = attempt.ctx
        super().__init__(
            Publisher(ctx.progress, attempt.job_id, attempt.attempt), epochs=epochs,
            min_interval_s=ctx.settings.events_progress_s,
        )  # fmt: skip
