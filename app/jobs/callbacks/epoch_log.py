"""EpochLogSink: the callback that commits each epoch's logs as the epoch ends (fenced by the
attempt number), through EpochWriter, the thread that commits them so training does not wait on
the database. It also times each epoch for the metrics."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from datetime import datetime

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from app.db.base import utcnow
from app.db.session import unit_of_work
from app.engine.callbacks import Callback, Logs
from app.engine.config.errors import TrainingInterrupted
from app.jobs import repository as repo
from app.jobs.callbacks.attempt import AttemptContext
from app.jobs.heartbeat import LOST
from app.runtime import metrics
from app.runtime.jsonsafe import safe_logs

log = logging.getLogger(__name__)

EpochRow = tuple[int, dict[str, float | None], datetime]  # the epoch, its logs, when it ended


class EpochWriter(threading.Thread):
    """Commits epoch rows from a queue, in order, so training does not wait on the database.

    Commits are at least EPOCH_COMMIT_S apart: a row is committed within that of its epoch's
    end, and the epochs that end meanwhile go in the same transaction. A commit costs the
    process about a millisecond of Python and the database a transaction; on a model whose
    epoch takes a few milliseconds, one an epoch would cost as much as the training and, on the
    same cores, slow it down (the writer's Python holds the interpreter lock that the training
    thread needs between operators). `flush()` commits at once and waits until everything
    submitted is committed; it raises TrainingInterrupted if the attempt turned out stale."""

    def __init__(self, attempt: AttemptContext) -> None:
        super().__init__(name=f"epoch-writer-{attempt.job_id}", daemon=True)
        self.ctx, self.job_id, self.attempt = attempt.ctx, attempt.job_id, attempt.attempt
        self.queue: queue.Queue[EpochRow | None] = queue.Queue()
        self.interval = attempt.ctx.settings.epoch_commit_s
        self.hurry = threading.Event()  # set by flush and close: commit without waiting
        self.lost = threading.Event()
        self.failed = threading.Event()
        self.error: BaseException | None = None
        self._first = True
        self._conn: Connection | None = None

    def submit(self, epoch: int, logs: dict[str, float | None]) -> None:
        self.queue.put((epoch, logs, utcnow()))

    def _write(self, items: list[EpochRow]) -> None:
        for attempt in range(5):
            try:
                # One connection for the whole fit: a pool checkout (with its liveness ping)
                # per epoch would cost more than the write itself.
                if self._conn is None:
                    self._conn = self.ctx.engine.connect()
                with unit_of_work(lambda: Session(bind=self._conn)) as session:
                    written = repo.record_epochs(
                        session, job_id=self.job_id, attempt=self.attempt,
                        rows=[(epoch, logs) for epoch, logs, _ in items],
                        ended_at=[at for _, _, at in items], first_of_attempt=self._first,
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

    def _pause(self, since: float) -> None:
        """Wait out the rest of the interval since the last commit began (`since`), unless a
        flush or the end asks for the rows now."""
        left = self.interval - (time.monotonic() - since)
        if left > 0:
            self.hurry.wait(left)

    def run(self) -> None:
        last = -float("inf")
        while True:
            item = self.queue.get()
            if item is not None:
                self._pause(last)
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
                last = time.monotonic()
                self._write(items)
            for _ in range(len(items) + (1 if done else 0)):
                self.queue.task_done()
            if done:
                self._disconnect()
                return

    def flush(self) -> None:
        self.hurry.set()
        try:
            self.queue.join()
        finally:
            self.hurry.clear()
        self.check()

    def check(self) -> None:
        if self.lost.is_set():
            raise TrainingInterrupted(LOST)
        if self.failed.is_set() and self.error is not None:
            raise self.error

    def close(self) -> None:
        self.hurry.set()
        self.queue.put(None)


class EpochLogSink(Callback):
    """Hands each epoch's logs (what every callback before it added included) to its writer
    thread as the epoch ends. Its owner closes it when the fit is over (`close`)."""

    def __init__(self, attempt: AttemptContext) -> None:
        self.writer = EpochWriter(attempt)
        self.writer.start()
        self.clock = metrics.EpochClock()

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        self.clock.begin(self.trainer.batches)

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        self.writer.submit(epoch, safe_logs(dict(logs or {})))
        self.clock.end(self.trainer.batches)

    def flush(self) -> None:
        """Wait until every submitted row is committed; raises TrainingInterrupted when the
        attempt turned out stale, or the error that made the writer give up."""
        self.writer.flush()

    def drain(self) -> None:
        """Wait until every submitted row is committed or given up on, raising nothing."""
        self.writer.hurry.set()
        self.writer.queue.join()

    def check_rows(self) -> None:
        """Raise what `flush` would, without waiting."""
        self.writer.check()

    def close(self) -> None:
        self.writer.close()
