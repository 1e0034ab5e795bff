"""A model's own weights files, under `models/<model id>/`, and their lifetime.

Every change of a model's weights (an upload, adapt, compile, train_on_batch, a fit's end)
writes a new file and points the model's row at it, under the row's lock. The file the row
pointed at before is then deleted, after that change has committed, so a model keeps one
weights file of its own however often it changes (a fit's checkpoints, under its job's prefix,
stay with the job). The file stays where it is when:

- it is not the model's own (a fit's final checkpoint, which the row points at after a fit);
- a queued or running fit job will start from it (its `base_weights_key`). Only those can read
  it: a job reads its base file only while it has no checkpoint of its own, and only an attempt
  that holds the job (queued, or running with an expired lease) runs; a finished job is never
  claimed again, and a resumed fit is a new job that starts from its parent's checkpoint. The
  model's row lock, which `submit_fit` also takes when it copies the row's file into a job,
  makes the check and the switch one step.

A reader that read the row before such a change may find the file gone: it raises
`WeightsChanged`, and the use cases marked `@retried` run again once on the row as it is now.
"""

from __future__ import annotations

import functools
import logging
import posixpath
import threading
import uuid
import zlib
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from sqlalchemy.orm import Session

from app.core.errors import Conflict
from app.engine.models.model import Model
from app.models import repository as repo
from app.models.loading import load_weights
from app.runtime.context import AppContext
from app.runtime.storage import ArtifactStore

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")

_LOCKS = [threading.Lock() for _ in range(64)]


def model_lock(model_id: uuid.UUID) -> threading.Lock:
    """Serialises, within this process, the calls that change which weights file a model holds
    or copy it into a job, beside the row lock they take: SQLite, the embedded database, has no
    row locks."""
    return _LOCKS[zlib.crc32(model_id.bytes) % len(_LOCKS)]


def model_prefix(model_id: uuid.UUID) -> str:
    return f"models/{model_id}"


class WeightsChanged(Conflict):
    """A weights file was gone when read: a change of the model replaced (and deleted) it after
    its row was read, or the model was deleted meanwhile."""


def load_or_changed(store: ArtifactStore, model: Model, key: str | None, *,
                    model_id: uuid.UUID) -> Model:  # fmt: skip
    """`load_weights`, with a missing file reported as `WeightsChanged`."""
    try:
        return load_weights(store, model, key)
    except FileNotFoundError as exc:
        raise WeightsChanged(f"the weights of model {model_id} changed while they were being "
                             "read; try again", loc=["path", "model_id"]) from exc  # fmt: skip


def retried(fn: Callable[P, T]) -> Callable[P, T]:
    """Run a use case that reads a model's row and then a weights file once more when the file
    was gone (`WeightsChanged`): the second run reads the row again, so it finds the new file,
    or that the model is gone (404). Only for use cases that write nothing before the read."""

    @functools.wraps(fn)
    def again(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except WeightsChanged:
            log.info("%s: a weights file was replaced while read; reading again", fn.__name__)
            return fn(*args, **kwargs)

    return again


R = TypeVar("R")


def on_fresh_row(read: Callable[[], R], use: Callable[[R], T], row: R | None = None) -> T:
    """`retried` for a caller that may hold the row already: `use(row)` (the row `read()` when
    none is given), and once more on the row read again when its weights file was gone. A
    caller that has just read the row passes it, saving the second read of the same row."""
    try:
        return use(read() if row is None else row)
    except WeightsChanged:
        log.info("a weights file was replaced while read; reading the model again")
        return use(read())


def replaced_file(
    session: Session, *, model_id: uuid.UUID, old: str | None, new: str | None
) -> str | None:
    """In the transaction that holds the model's row lock and points the row from `old` to
    `new`: the file to delete once it commits, or None when `old` must stay (see the module).
    Call it before the UPDATE, which also refreshes the row the session loaded."""
    if old is None or old == new or posixpath.dirname(old) != model_prefix(model_id):
        return None
    if ".." in old.split("/"):
        return None
    if repo.active_job_starting_from(session, model_id=model_id, key=old) is not None:
        return None
    return old


def discard(ctx: AppContext, key: str | None) -> None:
    """Delete a replaced weights file, after the change has committed. A failure is logged and
    leaves an orphan file; the change stands."""
    if key is None:
        return
    try:
        ctx.store.delete(key)
    except Exception:
        log.exception("could not delete the replaced weights file %s; it stays behind", key)
