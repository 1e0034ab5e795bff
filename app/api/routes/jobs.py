"""Routes of the jobs domain: POST /v1/models/{id}/fit, which starts a fit job, and /v1/jobs
(status and history, epoch logs, the live event stream, cancel, the checkpoint listing, resume).
A checkpoint's export as a model file is the models domain's (routes/checkpoint_exports.py)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Body, Header, Query, Response, status
from fastapi.responses import StreamingResponse

from app.api.auth import Caller
from app.api.deps import Ctx
from app.api.errors import ErrorOut
from app.jobs import events, resume, service
from app.jobs.schemas import (
    RESUME_EXAMPLES,
    CheckpointList,
    CheckpointOut,
    EpochLogList,
    FitRequest,
    JobList,
    JobOut,
    ResumeRequest,
    epoch_out,
    job_out,
)

# The fit route starts a job, so it is this domain's, but it lives under its model's path (and,
# in the OpenAPI document, beside the other model routes).
fit_router = APIRouter(tags=["models"])
FIT_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "No such model"},
    409: {"model": ErrorOut, "description": "Conflict"},
    413: {
        "model": ErrorOut,
        "description": "One sample of the model is estimated past "
        "SYNC_MAX_COST, so the fit cannot be checked (`cost_too_high`)",
    },
    422: {"model": ErrorOut, "description": "Invalid input; `loc` names the field"},
}


@fit_router.post(
    "/v1/models/{model_id}/fit",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    responses=FIT_ERRORS,
    summary="Start a fit job (Keras's model.fit)",
)
def fit_model(ctx: Ctx, who: Caller, model_id: uuid.UUID, body: FitRequest) -> JobOut:
    """Everything is checked before the job is queued. The job trains from the model's current
    weights; when it succeeds the model holds the trained weights, as after Keras's fit."""
    return job_out(service.submit_fit(ctx, scope=who.scope, model_id=model_id, body=body), {})


router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
MAX_EPOCH = 2**31 - 1
E404: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut, "description": "No such job"}}
# The body is optional (the latest checkpoint, the parent's epochs).
ResumeBody = Annotated[ResumeRequest | None, Body(openapi_examples=RESUME_EXAMPLES)]


@router.get("", response_model=JobList, summary="List jobs, newest first")
def list_jobs(
    ctx: Ctx,
    who: Caller,
    model_id: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=MAX_EPOCH)] = 0,
) -> JobList:
    pairs = service.list_jobs(ctx, scope=who.scope, model_id=model_id, limit=limit, offset=offset)
    return JobList(items=[job_out(j, service.history(rows)) for j, rows in pairs])


@router.get("/{job_id}", response_model=JobOut, responses=E404, summary="Job status and history")
def get_job(ctx: Ctx, who: Caller, job_id: uuid.UUID) -> JobOut:
    job, rows = service.get_job(ctx, scope=who.scope, job_id=job_id)
    return job_out(job, service.history(rows))


@router.get(
    "/{job_id}/logs",
    response_model=EpochLogList,
    responses=E404,
    summary="One row per finished epoch (0-based, as Keras callbacks count)",
)
def list_job_logs(
    ctx: Ctx, who: Caller, job_id: uuid.UUID, after: Annotated[int, Query(ge=-1, le=MAX_EPOCH)] = -1
) -> EpochLogList:
    rows = service.job_logs(ctx, scope=who.scope, job_id=job_id, after=after)
    return EpochLogList(job_id=job_id, items=[epoch_out(r) for r in rows])


@router.get(
    "/{job_id}/events",
    responses={
        **E404,
        200: {"content": {"text/event-stream": {}},
              "description": "`epoch` events (id = epoch) with throttled `progress` events "
                             "(epoch, batch, steps, epochs, attempt, running logs; no id) "
                             "while an epoch trains, then one `status` event"},
        204: {"description": "The job has ended and there is nothing after Last-Event-ID"},
    },
    summary="Live Server-Sent Events; reconnect with Last-Event-ID to resume",
    response_class=StreamingResponse,
)  # fmt: skip
async def stream_job_events(
    ctx: Ctx,
    who: Caller,
    job_id: uuid.UUID,
    last_event_id: Annotated[int | None, Header(ge=-1, le=MAX_EPOCH)] = None,
    after: Annotated[
        int | None, Query(ge=-1, le=MAX_EPOCH, description="Like Last-Event-ID")
    ] = None,
) -> Response:
    start = last_event_id if last_event_id is not None else (after if after is not None else -1)
    ended = await anyio.to_thread.run_sync(
        events.finished_with_nothing_after, ctx, who.scope, job_id, start
    )
    if ended and start >= 0:
        return Response(status_code=204)
    return StreamingResponse(
        events.stream(ctx, scope=who.scope, job_id=job_id, after=start),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.post(
    "/{job_id}/cancel",
    response_model=JobOut,
    responses={**E404, 409: {"model": ErrorOut, "description": "Already finished"}},
    summary="Cancel: at once if queued, between batches if running",
)
def cancel_job(ctx: Ctx, who: Caller, job_id: uuid.UUID) -> JobOut:
    job = service.cancel_job(ctx, scope=who.scope, job_id=job_id)
    return job_out(job, {})


@router.get(
    "/{job_id}/checkpoints",
    response_model=CheckpointList,
    responses=E404,
    summary="The job's checkpoints: epoch, attempt and logs of each",
)
def list_checkpoints(ctx: Ctx, who: Caller, job_id: uuid.UUID) -> CheckpointList:
    job, rows = service.list_checkpoints(ctx, scope=who.scope, job_id=job_id)
    return CheckpointList(job_id=job.id, items=[CheckpointOut.of(r) for r in rows])


@router.post(
    "/{job_id}/resume",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobOut,
    responses={
        **E404,
        409: {"model": ErrorOut, "description": "The job is still active, or the model is "
                                                "training"},
        422: {"model": ErrorOut, "description": "No such checkpoint, a mid-epoch one, or no "
                                                "epochs left; `loc` names the field"},
    },
    summary="Continue a finished job from one of its checkpoints, as a new fit job",
)  # fmt: skip
def resume_job(ctx: Ctx, who: Caller, job_id: uuid.UUID, body: ResumeBody = None) -> JobOut:
    """A new fit job on the same model with the job's compile spec, callbacks, seed, fit
    arguments and data, starting at the checkpoint's epoch + 1 from its full training state
    (weights, optimizer state and schedule position, RNG state, batch order): resuming at epoch
    k and running to N gives the epochs and final weights of an uninterrupted fit to N. Its
    history holds its own epochs only, as Keras's fit with initial_epoch returns; when it
    succeeds the model holds its final weights."""
    job = resume.resume_job(ctx, scope=who.scope, job_id=job_id, body=body or ResumeRequest())
    return job_out(job, {})
