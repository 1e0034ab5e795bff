"""Routes of the standard predict protocols, so that serving clients work unchanged: TensorFlow
Serving's `POST /v1/models/{id}:predict` and the Open Inference Protocol (KServe V2) under /v2,
its infer also with the binary tensor data extension. The translation is the models domain's
(app.models.serving); errors carry the protocols' `error` (app.api.protocol_errors)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Body, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from app.api.auth import Caller, authorize
from app.api.deps import Ctx
from app.api.middleware import BodyTooLarge
from app.api.predict_lane import run_predict
from app.api.request_guard import UNTYPED_BODY
from app.core.errors import InvalidInput, PayloadTooLarge
from app.models import serving
from app.models.serving_schemas import (
    SEED_ROWS,
    ProtocolErrorOut,
    TFPredictOut,
    TFPredictRequest,
    V2InferOut,
    V2InferRequest,
    V2Live,
    V2ModelMetadata,
    V2ModelReady,
    V2Ready,
    V2ServerMetadata,
)
from app.runtime.context import AppContext
from app.runtime.readiness import OK

OCTET = "application/octet-stream"
HEADER_LENGTH = "Inference-Header-Content-Length"
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ProtocolErrorOut, "description": "Invalid input; `error` names the field"},
    404: {"model": ProtocolErrorOut, "description": "No such model"},
    413: {"model": ProtocolErrorOut, "description": "Body too large, or more rows than "
          "PREDICT_SYNC_MAX_ROWS or past SYNC_MAX_COST (these protocols queue no job)"},
    # Declared, so that no 422 is: these protocols answer invalid input with a 400.
    "4XX": {"model": ProtocolErrorOut, "description": "No key (401), a role too weak (403), "
            "a Content-Type not taken (415), too many requests (429)"},
}  # fmt: skip
READ_ERRORS: dict[int | str, dict[str, Any]] = {code: ERRORS[code] for code in (400, 404, "4XX")}
TF_EXAMPLES: dict[str, Any] = {
    "row": {"summary": "Row format", "value": {"instances": SEED_ROWS}},
    "columnar": {"summary": "Columnar format", "value": {"inputs": SEED_ROWS}},
    "named": {"summary": "Row format, inputs by name (a model with inputs a and b)",
              "value": {"instances": [{"a": [1.0, 2.0], "b": [0.5]},
                                      {"a": [3.0, 4.0], "b": [1.5]}]}},
}  # fmt: skip


def _binary(request: Request) -> bool:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return media in (OCTET, "") or HEADER_LENGTH.lower() in request.headers


class V2Route(APIRoute):
    """infer's route: a body in the binary tensor data extension (`Inference-Header-Content-Length`,
    or Content-Type application/octet-stream), or without a type, goes to `v2_infer_binary`;
    JSON the usual way."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        json_handler = super().get_route_handler()
        name = self.name

        async def handler(request: Request) -> Response:
            if name == "v2_infer" and _binary(request):
                return await v2_infer_binary(request)
            return await json_handler(request)

        return handler


tf_router = APIRouter(prefix="/v1/models", tags=["serving"])
v2_router = APIRouter(prefix="/v2/models", tags=["serving"], route_class=V2Route)
public_router = APIRouter(prefix="/v2", tags=["serving"])


@tf_router.post(
    "/{model_id}:predict",
    response_model=TFPredictOut,
    response_model_exclude_none=True,
    responses=ERRORS,
    summary="TensorFlow Serving's REST predict",
)
def tfserving_predict(
    ctx: Ctx,
    who: Caller,
    model_id: uuid.UUID,
    body: TFPredictRequest = Body(openapi_examples=TF_EXAMPLES),
) -> Any:
    """`instances` (row format) answered as `predictions`, or `inputs` (columnar) as
    `outputs`, on the model's current weights: the numbers of POST /v1/models/{id}/predict.
    Only requests /v1 answers at once are taken; errors are `{"error": ...}` with 400 or 404."""
    return serving.tf_predict(ctx, scope=who.scope, model_id=model_id, body=body)


@public_router.get("/health/live", response_model=V2Live, summary="V2 server liveness")
def v2_health_live() -> Any:
    """The server is up (as /healthz); no key needed."""
    return {"live": True}


@public_router.get(
    "/health/ready",
    response_model=V2Ready,
    responses={503: {"model": V2Ready, "description": "Not ready: see /readyz for why"}},
    summary="V2 server readiness",
)
async def v2_health_ready(request: Request) -> Any:
    """The checks of /readyz (database, broker, artifact store); no key needed."""
    checks = await request.app.state.readiness.run()
    ready = all(outcome == OK for outcome in checks.values())
    return JSONResponse({"ready": ready}, status_code=200 if ready else 503)


@public_router.get("", response_model=V2ServerMetadata, summary="V2 server metadata")
def v2_server_metadata(request: Request) -> Any:
    """The server's name and version, and the protocol extensions it speaks."""
    return {"name": "fitapi", "version": request.app.version, "extensions": ["binary_tensor_data"]}


@v2_router.get(
    "/{model_id}",
    response_model=V2ModelMetadata,
    responses=READ_ERRORS,
    summary="V2 model metadata",
)
def v2_model_metadata(ctx: Ctx, who: Caller, model_id: uuid.UUID) -> Any:
    """The model's inputs and outputs with their names, datatypes (FP32, INT64, ... from the
    input dtypes) and shapes, -1 for the batch dimension."""
    return serving.v2_metadata(ctx, scope=who.scope, model_id=model_id)


@v2_router.get(
    "/{model_id}/ready",
    response_model=V2ModelReady,
    responses=READ_ERRORS,
    summary="V2 model ready",
)
def v2_model_ready(ctx: Ctx, who: Caller, model_id: uuid.UUID) -> Any:
    """A model that exists is ready: it answers on its current weights."""
    meta = serving.v2_metadata(ctx, scope=who.scope, model_id=model_id)
    return {"name": meta["name"], "ready": True}


def _answer(header: dict[str, Any], blob: bytes) -> Response:
    if not blob and not any("parameters" in out for out in header["outputs"]):
        return JSONResponse(header)
    head = bytes(JSONResponse(header).body)
    return Response(head + blob, media_type=OCTET, headers={HEADER_LENGTH: str(len(head))})


@v2_router.post(
    "/{model_id}/infer",
    response_model=V2InferOut,
    response_model_exclude_none=True,
    responses={
        200: {"content": {OCTET: {"schema": {"type": "string", "format": "binary"}}},
              "description": "The outputs: JSON, or (binary_data asked for) the JSON header "
              f"of {HEADER_LENGTH} bytes followed by the outputs' bytes"},
        **ERRORS,
    },
    summary="V2 inference",
    # Also the content types the request guard accepts for this route; and a body without one
    # (app.api.request_guard), as the protocol's own clients send it.
    openapi_extra={"requestBody": {"content": {OCTET: {
        "schema": {"type": "string", "format": "binary"}}}}, UNTYPED_BODY: True},
)  # fmt: skip
def v2_infer(ctx: Ctx, who: Caller, model_id: uuid.UUID, body: V2InferRequest) -> Response:
    """Tensors in JSON (`data`, flat or nested, row-major), or with the binary tensor data
    extension: the JSON header, then each input's little-endian bytes
    (`parameters.binary_data_size`), its length in `Inference-Header-Content-Length`. Outputs
    come back in binary where `binary_data` (per output) or `binary_data_output` (request
    parameters) asks. BYTES tensors are refused (400)."""
    header, blob = serving.v2_infer(ctx, scope=who.scope, model_id=model_id, body=body, binary=b"")
    return _answer(header, blob)


async def v2_infer_binary(request: Request) -> Response:
    ctx: AppContext = request.app.state.ctx
    # This handler runs outside the dependency system: the caller is checked here.
    who = authorize(request)
    try:
        model_id = uuid.UUID(request.path_params["model_id"])
    except ValueError:
        raise InvalidInput("must be a UUID", loc=["path", "model_id"]) from None
    try:
        data = await request.body()
    except BodyTooLarge as exc:
        raise PayloadTooLarge(str(exc), loc=["body"]) from exc
    length = request.headers.get(HEADER_LENGTH)

    def run() -> Response:
        body, binary = serving.split_binary(data, length)
        header, blob = serving.v2_infer(ctx, scope=who.scope, model_id=model_id, body=body,
                                        binary=binary)  # fmt: skip
        return _answer(header, blob)

    return await run_predict(request.app.state, run)
