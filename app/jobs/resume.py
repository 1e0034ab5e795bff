"""Resume: a new fit job that continues a finished job from one of its checkpoints.

The new job (the child) runs on the same model with the parent's stored request and inputs
(compile spec, callbacks, seed, fit arguments, data), with `initial_epoch` set to the
checkpoint's epoch + 1 and `epochs` as asked. Its runner loads the checkpoint's whole training
state, as a crashed attempt resumes: weights, optimizer slots and step count (so a schedule
continues where it was), the RNG state (shuffles and dropout continue the same sequence) and the
position in the batch order. Resuming at epoch k and running to N therefore gives the epochs and
final weights an uninterrupted fit to N gives.

As Keras's fit with initial_epoch returns a History of the epochs it ran, the child's history and
logs hold its own epochs only (numbered from initial_epoch); the parent keeps its own. When the
child succeeds the model holds its final weights, as after any fit.
"""

from __future__ import annotations

import math
import uuid

from sqlalchemy.exc import IntegrityError

from app.auth.quotas import require_room
from app.core.errors import Conflict, InvalidInput, NotFound
from app.db.models import CheckpointRow, JobRow, JobStatus
from app.db.scope import Scope
from app.db.session import unit_of_work
from app.engine.training.fit_args import DEFAULT_BATCH_SIZE
from app.jobs import repository as repo
from app.jobs.inputs import stored_rows
from app.jobs.schemas import ResumeRequest
from app.jobs.service import dispatch, link_datasets
from app.jobs.spec import FitJobSpec, UnknownSpecVersion
from app.models import checkpoints
from app.models import repository as models_repo
from app.models.cost import check_job_steps
from app.runtime.context import AppContext

BODY = "body"
JOB = ["path", "job_id"]


def resume_job(ctx: AppContext, *, scope: Scope, job_id: uuid.UUID, body: ResumeRequest) -> JobRow:
    """Queue the child job; every check runs before the one transaction that adds it."""
    with unit_of_work(ctx.sessions) as session:
        parent = repo.get_job(session, job_id=job_id, scope=scope)
    if parent is None:
        raise NotFound(f"job {job_id} does not exist", loc=JOB)
    project = Scope.of_project(parent.project_id)
    if parent.kind != "fit":
        raise Conflict(f"job {job_id} is a {parent.kind} job; only fit jobs resume", loc=JOB)
    if not JobStatus(parent.status).is_terminal:
        raise Conflict(
            f"job {job_id} is {parent.status}; a job resumes once it has succeeded, failed or "
            "been cancelled (a running job's crashed attempts resume on their own)",
            loc=JOB,
        )
    ckpt = _start_checkpoint(ctx, project, parent, body.checkpoint)
    initial_epoch = ckpt.epoch + 1
    epochs = body.epochs if body.epochs is not None else parent.epochs
    if epochs <= initial_epoch:
        given = "" if body.epochs is not None else f" (the parent's, {epochs})"
        raise InvalidInput(
            f"epochs{given} must exceed {initial_epoch}: checkpoint {ckpt.id} ends epoch "
            f"{ckpt.epoch} (0-based), so the resumed fit runs epochs {initial_epoch} to "
            "epochs - 1 and needs at least one",
            loc=[BODY, "epochs"],
        )
    for key, what in ((parent.data_key, "inputs"), (ckpt.key, f"checkpoint {ckpt.id}")):
        if not ctx.store.exists(key):
            raise Conflict(f"job {job_id}: its {what} file is no longer stored", loc=JOB)
    try:
        spec = FitJobSpec.from_request(parent.request)
    except UnknownSpecVersion as exc:
        raise Conflict(f"job {job_id} was stored by a newer version: {exc}", loc=JOB) from None
    check_job_steps(ctx.settings, epochs=epochs, initial_epoch=initial_epoch,
                    steps=_steps_per_epoch(ctx, parent, spec), loc=[BODY, "epochs"])  # fmt: skip
    child = spec.resumed(epochs=epochs, initial_epoch=initial_epoch)
    busy = Conflict(f"model {parent.model_id} is already training", loc=JOB)
    try:
        with unit_of_work(ctx.sessions) as session:
            model = models_repo.get_model_for_update(
                session, model_id=parent.model_id, scope=project
            )
            if model is None:
                raise NotFound(f"the model of job {job_id} no longer exists", loc=JOB)
            if models_repo.active_job_of_model(session, model_id=parent.model_id) is not None:
                raise busy
            require_room(session, settings=ctx.settings, project_id=parent.project_id,
                         queued_jobs=1)  # fmt: skip
            job = repo.add_job(session, row=JobRow(
                id=uuid.uuid4(), model_id=parent.model_id, project_id=parent.project_id,
                request=child.to_request(),
                data_key=parent.data_key, base_weights_key=ckpt.key, epochs=epochs,
                epochs_done=initial_epoch, max_attempts=ctx.settings.job_max_attempts,
                parent_job_id=parent.id, start_checkpoint_id=ckpt.id,
            ))  # fmt: skip
            # The parent's datasets, which must still exist: the child reads the same rows.
            link_datasets(session, scope=project, job_id=job.id,
                          data_refs=child.data_refs,
                          gone=lambda ds: Conflict(f"job {job_id} reads dataset {ds}, which no "
                                                   "longer exists", loc=JOB))  # fmt: skip
    except IntegrityError as exc:  # the one-active-job-per-model index caught a race
        raise busy from exc
    dispatch(ctx, job.id)
    return job


def _start_checkpoint(
    ctx: AppContext, scope: Scope, parent: JobRow, selector: str
) -> CheckpointRow:
    loc = [BODY, "checkpoint"]
    if selector == "latest":  # the last resume point, where a crashed attempt would resume
        with unit_of_work(ctx.sessions) as session:
            found = repo.latest_checkpoint(session, job_id=parent.id)
        if found is None:
            raise InvalidInput(f"job {parent.id} has no epoch-end checkpoint to resume from",
                               loc=loc)  # fmt: skip
        return found
    try:
        _, found = checkpoints.resolve(ctx, scope=scope, job_id=parent.id, selector=selector)
    except (InvalidInput, NotFound) as exc:  # the job exists: the body names a bad checkpoint
        raise InvalidInput(exc.message, loc=loc) from None
    if found.batch is not None:
        raise InvalidInput(
            f"checkpoint {found.id} ({selector!r}) was saved mid-epoch (epoch {found.epoch}, "
            f"batch {found.batch}) and is no resume point; pick a checkpoint written at an "
            "epoch end",
            loc=loc,
        )
    return found


def _steps_per_epoch(ctx: AppContext, parent: JobRow, spec: FitJobSpec) -> int:
    """Batches an epoch of the parent's fit (`spec`) runs: its stored arguments, and its training
    rows (a dataset reference's, or those of its inputs file, read from the file's header)."""
    fit = spec.fit
    if fit.steps_per_epoch:
        return int(fit.steps_per_epoch)
    ref = spec.data_refs.get("x.0")
    if ref is not None:
        rows = ref["rows"][1] - ref["rows"][0]
    else:
        rows = stored_rows(ctx.store, parent.data_key, "x.0") or 0
    return math.ceil(rows / (fit.batch_size or DEFAULT_BATCH_SIZE))
