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

import uuid

from sqlalchemy.exc import IntegrityError

from app.core.errors import Conflict, InvalidInput, NotFound
from app.db.models import CheckpointRow, JobRow, JobStatus
from app.db.session import unit_of_work
from app.jobs import repository as repo
from app.jobs.schemas import ResumeRequest
from app.jobs.service import dispatch, link_datasets
from app.models import checkpoints
from app.models import repository as models_repo
from app.runtime.context import AppContext

BODY = "body"
JOB = ["path", "job_id"]


def resume_job(ctx: AppContext, *, job_id: uuid.UUID, body: ResumeRequest) -> JobRow:
    """Queue the child job; every check runs before the one transaction that adds it."""
    with unit_of_work(ctx.sessions) as session:
        parent = repo.get_job(session, job_id=job_id)
    if parent is None:
        raise NotFound(f"job {job_id} does not exist", loc=JOB)
    if parent.kind != "fit":
        raise Conflict(f"job {job_id} is a {parent.kind} job; only fit jobs resume", loc=JOB)
    if not JobStatus(parent.status).is_terminal:
        raise Conflict(
            f"job {job_id} is {parent.status}; a job resumes once it has succeeded, failed or "
            "been cancelled (a running job's crashed attempts resume on their own)",
            loc=JOB,
        )
    ckpt = _start_checkpoint(ctx, parent, body.checkpoint)
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
    fit = {**parent.request["fit"], "epochs": epochs, "initial_epoch": initial_epoch}
    busy = Conflict(f"model {parent.model_id} is already training", loc=JOB)
    try:
        with unit_of_work(ctx.sessions) as session:
            if models_repo.get_model_for_update(session, model_id=parent.model_id) is None:
                raise NotFound(f"the model of job {job_id} no longer exists", loc=JOB)
            if models_repo.active_job_of_model(session, model_id=parent.model_id) is not None:
                raise busy
            job = repo.add_job(session, row=JobRow(
                id=uuid.uuid4(), model_id=parent.model_id, request={**parent.request, "fit": fit},
                data_key=parent.data_key, base_weights_key=ckpt.key, epochs=epochs,
                epochs_done=initial_epoch, max_attempts=ctx.settings.job_max_attempts,
                parent_job_id=parent.id, start_checkpoint_id=ckpt.id,
            ))  # fmt: skip
            # The parent's datasets, which must still exist: the child reads the same rows.
            link_datasets(session, job_id=job.id, data_refs=parent.request.get("data_refs", {}),
                          gone=lambda ds: Conflict(f"job {job_id} reads dataset {ds}, which no "
                                                   "longer exists", loc=JOB))  # fmt: skip
    except IntegrityError as exc:  # the one-active-job-per-model index caught a race
        raise busy from exc
    dispatch(ctx, job.id)
    return job


def _start_checkpoint(ctx: AppContext, parent: JobRow, selector: str) -> CheckpointRow:
    loc = [BODY, "checkpoint"]
    if selector == "latest":  # the last resume point, where a crashed attempt would resume
        with unit_of_work(ctx.sessions) as session:
            found = repo.latest_checkpoint(session, job_id=parent.id)
        if found is None:
            raise InvalidInput(f"job {parent.id} has no epoch-end checkpoint to resume from",
                               loc=loc)  # fmt: skip
        return found
    try:
        _, found = checkpoints.resolve(ctx, job_id=parent.id, selector=selector)
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
