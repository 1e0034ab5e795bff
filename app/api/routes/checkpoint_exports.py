"""Routes of the models domain under a job's path: a fit job's checkpoint exported as a model
file, a Keras `.keras` file or safetensors (app.models.checkpoints). The job's checkpoints are
listed by the jobs routes (GET /v1/jobs/{id}/checkpoints)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Response

from app.api.auth import Caller
from app.api.deps import Ctx
from app.api.errors import ErrorOut
from app.api.responses import OCTET, attachment
from app.models import checkpoints

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
E404: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut, "description": "No such job"}}
GONE: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorOut, "description": "The checkpoint's file is no longer stored"}
}
Selector = Annotated[str, Path(max_length=64, description=checkpoints.SELECTOR_DOC)]


@router.get(
    "/{job_id}/checkpoints/{checkpoint}/model.keras",
    response_class=Response,
    responses={**E404, **GONE, 200: {"content": {OCTET: {}}, "description": "Opens with Keras"}},
    summary="A checkpoint as a Keras .keras file",
)
def export_checkpoint_keras(
    ctx: Ctx, who: Caller, job_id: uuid.UUID, checkpoint: Selector
) -> Response:
    data = checkpoints.export_keras(ctx, scope=who.scope, job_id=job_id, selector=checkpoint)
    return attachment(data, f"{job_id}-{checkpoint.replace(':', '-')}.keras")


@router.get(
    "/{job_id}/checkpoints/{checkpoint}/model.safetensors",
    response_class=Response,
    responses={
        **E404,
        **GONE,
        200: {"content": {OCTET: {}}, "description": "Weights by layer/name"},
    },
    summary="A checkpoint's weights as safetensors (`<layer>/<weight>`, Keras order in metadata)",
)
def export_checkpoint_safetensors(
    ctx: Ctx, who: Caller, job_id: uuid.UUID, checkpoint: Selector
) -> Response:
    data = checkpoints.export_safetensors(ctx, scope=who.scope, job_id=job_id, selector=checkpoint)
    return attachment(data, f"{job_id}-{checkpoint.replace(':', '-')}.safetensors")
