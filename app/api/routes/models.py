"""Routes of /v1/models, the models domain: create, list, read, delete, compile, the
*_on_batch family, adapt, weights, .keras import and exports. The fit route, POST
/v1/models/{id}/fit, is the jobs domain's (app.api.routes.jobs); a fit checkpoint's exports as a
model file are in app.api.routes.checkpoint_exports; evaluate and predict, which may run as jobs,
in app.api.routes.inference."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Query, Request, Response, status

from app.api.auth import Caller
from app.api.deps import Ctx
from app.api.errors import ErrorOut
from app.api.middleware import BodyTooLarge
from app.api.responses import OCTET, attachment
from app.core.errors import InvalidInput, PayloadTooLarge
from app.models import checkpoints, inference, on_batch, service, weights
from app.models.schemas import (
    AdaptOut,
    AdaptRequest,
    CompileRequest,
    Logs,
    ModelCreate,
    ModelList,
    ModelOut,
    PredictOnBatchRequest,
    PredictOut,
    TestOnBatchRequest,
    TrainOnBatchRequest,
    model_out,
)
from app.models.weights_npz import decode_npz

router = APIRouter(prefix="/v1/models", tags=["models"])
E404: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut, "description": "No such model"}}
E422: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorOut, "description": "Invalid input; `loc` names the field"}
}
# Also on the reading routes: their weights changed twice while they were read (rare; try again).
E409: dict[int | str, dict[str, Any]] = {409: {"model": ErrorOut, "description": "Conflict"}}
# Past SYNC_MAX_COST: the routes that have no job form refuse (app.models.cost).
E413: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorOut, "description": "Estimated cost past SYNC_MAX_COST (`cost_too_high`)"}
}


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ModelOut,
    responses=E422,
    summary="Create a model from Keras model JSON",
)
def create_model(ctx: Ctx, who: Caller, body: ModelCreate) -> ModelOut:
    """Build the model (shapes, parameter counts, seeded initial weights) and store it."""
    return model_out(service.create_model(ctx, scope=who.scope, body=body))


@router.get("", response_model=ModelList, summary="List models, newest first")
def list_models(
    ctx: Ctx,
    who: Caller,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> ModelList:
    rows, total = service.list_models(ctx, scope=who.scope, limit=limit, offset=offset)
    return ModelList(items=[model_out(r) for r in rows], total=total, limit=limit, offset=offset)


@router.get("/{model_id}", response_model=ModelOut, responses=E404, summary="Read a model")
def get_model(ctx: Ctx, who: Caller, model_id: uuid.UUID) -> ModelOut:
    return model_out(service.get_model(ctx, scope=who.scope, model_id=model_id))


@router.delete(
    "/{model_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**E404, **E409},
    summary="Delete a model, its jobs and artifacts",
)
def delete_model(ctx: Ctx, who: Caller, model_id: uuid.UUID) -> Response:
    service.delete_model(ctx, scope=who.scope, model_id=model_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{model_id}/compile",
    response_model=ModelOut,
    responses={**E404, **E409, **E413, **E422},
    summary="Keras's compile: store the model's compile spec",
)
def compile_model(ctx: Ctx, who: Caller, model_id: uuid.UUID, body: CompileRequest) -> ModelOut:
    """Checked against the model's outputs and stored; fit, evaluate and the *_on_batch routes
    use it when their request has no `compile`. As recompiling does in Keras, the next
    train_on_batch starts a fresh optimizer; the weights stay."""
    return model_out(on_batch.compile_model(ctx, scope=who.scope, model_id=model_id, body=body))


@router.post(
    "/{model_id}/train_on_batch",
    response_model=Logs,
    responses={**E404, **E409, **E413, **E422},
    summary="Keras's train_on_batch(..., return_dict=True): one optimizer step",
)
def train_on_batch(
    ctx: Ctx, who: Caller, model_id: uuid.UUID, body: TrainOnBatchRequest
) -> dict[str, float | None]:
    """One optimizer step on all of x, from the model's current weights (or a checkpoint's)
    and its optimizer state; the loss and metrics of this batch (metrics are reset per call),
    from the forward pass before the update. The new weights and optimizer state become the
    model's, so repeated calls continue as they do in Keras, and a call after a fit continues
    the fit's optimizer. Calls on one model run one at a time; refused while a fit runs."""
    return on_batch.train_on_batch(ctx, scope=who.scope, model_id=model_id, body=body)


@router.post(
    "/{model_id}/test_on_batch",
    response_model=Logs,
    responses={**E404, **E409, **E413, **E422},
    summary="Keras's test_on_batch(..., return_dict=True)",
)
def test_on_batch(
    ctx: Ctx, who: Caller, model_id: uuid.UUID, body: TestOnBatchRequest
) -> dict[str, float | None]:
    """Loss and metrics of all of x as one batch, in inference mode; nothing changes."""
    return inference.test_on_batch(ctx, scope=who.scope, model_id=model_id, body=body)


@router.post(
    "/{model_id}/predict_on_batch",
    response_model=PredictOut,
    responses={**E404, **E409, **E413, **E422},
    summary="Keras's predict_on_batch",
)
def predict_on_batch(
    ctx: Ctx, who: Caller, model_id: uuid.UUID, body: PredictOnBatchRequest
) -> PredictOut:
    """One forward pass over all of x in inference mode."""
    return PredictOut(
        predictions=inference.predict_on_batch(ctx, scope=who.scope, model_id=model_id, body=body)
    )


@router.post(
    "/{model_id}/adapt",
    response_model=AdaptOut,
    responses={**E404, **E409, **E413, **E422},
    summary="Keras's Normalization.adapt on the model's Normalization layers",
)
def adapt_model(ctx: Ctx, who: Caller, model_id: uuid.UUID, body: AdaptRequest) -> AdaptOut:
    """Each layer is adapted on what it receives when the model runs on x (inference mode), in
    the order the model calls them; the adapted weights become the model's weights."""
    names, row = weights.adapt_weights(ctx, scope=who.scope, model_id=model_id, body=body)
    return AdaptOut(adapted=names, model=model_out(row))


NPZ = OCTET
# The seed model's (app.models.examples): Normalization's mean, variance and count, then each
# Dense's kernel and bias.
SEED_WEIGHTS = [[0.0], [1.0], 0, [[0.8413]], [0.0], [[-1.2061]], [0.0]]
BINARY = {"schema": {"type": "string", "format": "binary"}}
# The request guard (app.api.request_guard) accepts exactly the content types declared here.
KERAS_TYPES = (OCTET, "application/zip", "application/x-keras")
WEIGHTS_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            NPZ: BINARY, "application/x-npz": BINARY, "application/zip": BINARY,
            "application/json": {"schema": {
                "type": "object", "required": ["weights"],
                "properties": {"weights": {"type": "array", "items": {}}},
            }, "example": {"weights": SEED_WEIGHTS}},
        },
        "description": "The arrays in Keras's get_weights() order: an .npz of arr_0, arr_1, "
        "... (numpy.savez(f, *model.get_weights())) or JSON lists",
    }
}  # fmt: skip


@router.get(
    "/{model_id}/weights",
    response_class=Response,
    responses={
        **E404,
        **E409,
        200: {"content": {NPZ: {}}, "description": "An .npz, Keras's order"},
    },
    summary="Download the weights (Keras's get_weights order, as an .npz)",
)
def get_weights(ctx: Ctx, who: Caller, model_id: uuid.UUID) -> Response:
    data = weights.get_weights(ctx, scope=who.scope, model_id=model_id)
    return attachment(data, f"{model_id}.weights.npz")


async def _body(request: Request) -> bytes:
    """The whole body of a route that reads it itself: over the limit is a 413 (the limit's
    BodyTooLarge is raised here when the body is chunked)."""
    try:
        return await request.body()
    except BodyTooLarge as exc:
        raise PayloadTooLarge(str(exc), loc=["body"]) from exc


@router.put(
    "/{model_id}/weights",
    response_model=ModelOut,
    responses={**E404, **E409, **E422},
    openapi_extra=WEIGHTS_BODY,
    summary="Replace the weights (Keras's set_weights); every shape is checked first",
)
async def put_weights(ctx: Ctx, who: Caller, model_id: uuid.UUID, request: Request) -> ModelOut:
    body = await _body(request)
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            parsed = json.loads(body)
        except RecursionError:
            raise InvalidInput("the JSON is nested too deeply", loc=["body"]) from None
        except ValueError as exc:
            raise InvalidInput(f"invalid JSON: {exc}", loc=["body"]) from exc
        arrays = weights.decode_json(parsed)
    else:
        limit = 4 * ctx.settings.max_request_bytes
        arrays = await anyio.to_thread.run_sync(lambda: decode_npz(body, max_bytes=limit))
    row = await anyio.to_thread.run_sync(
        lambda: weights.put_weights(ctx, scope=who.scope, model_id=model_id, arrays=arrays)
    )
    return model_out(row)


@router.post(
    "/import",
    status_code=status.HTTP_201_CREATED,
    response_model=ModelOut,
    responses=E422,
    openapi_extra={"requestBody": {"required": True,
        "content": {media: BINARY for media in KERAS_TYPES},
        "description": "A .keras file, as keras_model.save(path) writes it"}},
    summary="Create a model from a Keras .keras file (config, weights, compile spec)",
)  # fmt: skip
async def import_keras(
    ctx: Ctx,
    who: Caller,
    request: Request,
    name: Annotated[str | None, Query(max_length=200)] = None,
    seed: Annotated[int | None, Query(ge=0, le=2**63 - 1)] = None,
) -> ModelOut:
    """Read with our own reader: member names and sizes are checked, only numeric datasets are
    read, and no Keras deserialization code runs."""
    data = await _body(request)
    row = await anyio.to_thread.run_sync(
        lambda: weights.import_keras(ctx, scope=who.scope, data=data, name=name, seed=seed)
    )
    return model_out(row)


@router.get(
    "/{model_id}/model.keras",
    response_class=Response,
    responses={**E404, **E409, 200: {"content": {NPZ: {}},
                                     "description": "Opens with keras.saving.load_model"}},
    summary="Download the model as a Keras .keras file",
)  # fmt: skip
def export_keras(ctx: Ctx, who: Caller, model_id: uuid.UUID) -> Response:
    data = weights.export_keras(ctx, scope=who.scope, model_id=model_id)
    return attachment(data, f"{model_id}.keras")


@router.get(
    "/{model_id}/model.safetensors",
    response_class=Response,
    responses={**E404, **E409, 200: {"content": {NPZ: {}}, "description": "Weights by layer/name"}},
    summary="The model's weights as safetensors (`<layer>/<weight>`, Keras order in metadata)",
)
def export_safetensors(ctx: Ctx, who: Caller, model_id: uuid.UUID) -> Response:
    data = checkpoints.model_safetensors(ctx, scope=who.scope, model_id=model_id)
    return attachment(data, f"{model_id}.safetensors")
