"""Routes of evaluate and predict on a model: answered at once, or (over
PREDICT_SYNC_MAX_ROWS rows, or past SYNC_MAX_COST) run as a job, which is why they sit above
both the models and the jobs domains. predict also takes an `.npy` or `.npz` body and answers
in `.npy` (`.npz` for several outputs) when `Accept` asks for it."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, Request, Response, status
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from app.api.auth import Caller, authorize
from app.api.deps import Ctx
from app.api.errors import ErrorOut
from app.api.middleware import BodyTooLarge
from app.api.predict_lane import Mergeable, run_predict
from app.core.errors import InvalidInput, PayloadTooLarge
from app.datasets.service import BodyArrays
from app.db.scope import Scope
from app.jobs import inference_jobs
from app.jobs.schemas import JobOut, job_out
from app.models.inference import outputs_json
from app.models.schemas import EvaluateRequest, Logs, PredictOut, PredictRequest
from app.models.service import NotCached, cached_only
from app.runtime.context import AppContext

NPY, NPZ = "application/x-npy", "application/x-npz"
BINARY = {"schema": {"type": "string", "format": "binary"}}
E404: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut, "description": "No such model"}}
E409: dict[int | str, dict[str, Any]] = {409: {"model": ErrorOut, "description": "Conflict"}}
E422: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorOut, "description": "Invalid input; `loc` names the field"}
}
JOB: dict[int | str, dict[str, Any]] = {
    202: {
        "model": JobOut,
        "description": "Over PREDICT_SYNC_MAX_ROWS rows, or past SYNC_MAX_COST: the queued job",
    }
}
# 422 also for a synchronous loop stopped at SYNC_DEADLINE_S (`deadline_exceeded`).
E413: dict[int | str, dict[str, Any]] = {
    413: {
        "model": ErrorOut,
        "description": "Body too large; or (evaluate) one sample of the "
        "model is estimated past SYNC_MAX_COST (`cost_too_high`)",
    }
}
# An .npy body up to this size is read on the event loop (in place, no scratch files), so that
# a small predict may run there too (see _inline).
INLINE_BODY_BYTES = 1 << 16
BINARY_MEDIA = {NPY: "npy", "application/npy": "npy", NPZ: "npz", "application/zip": "npz",
                "application/octet-stream": None}  # fmt: skip


def _media(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


class BinaryBodyRoute(APIRoute):
    """A route whose endpoint also takes an `.npy`/`.npz` body: such a request goes to the
    handler `binary_handlers` names for the endpoint; JSON goes the usual way."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        json_handler = super().get_route_handler()
        name = self.name

        async def handler(request: Request) -> Response:
            direct = direct_handler(name, _media(request))
            if direct is not None:
                answer = await direct(request)
                if answer is not None:
                    return answer
            return await json_handler(request)

        return handler


router = APIRouter(prefix="/v1/models", tags=["models"], route_class=BinaryBodyRoute)


def _job_response(row: Any) -> JSONResponse:
    body = job_out(row, {}).model_dump(mode="json")
    return JSONResponse(body, status_code=status.HTTP_202_ACCEPTED)


@router.post(
    "/{model_id}/evaluate",
    response_model=Logs,
    responses={**JOB, **E404, **E409, **E413, **E422},
    summary="Keras's evaluate(..., return_dict=True)",
)
def evaluate_model(ctx: Ctx, who: Caller, model_id: uuid.UUID, body: EvaluateRequest) -> Any:
    """Loss and metrics on the model's current weights, or a checkpoint's (`checkpoint`). With
    the fit's batch size this runs the very code the fit's validation ran, so on an epoch's
    checkpoint it reproduces that epoch's val_ values. Over PREDICT_SYNC_MAX_ROWS rows, or past
    SYNC_MAX_COST, a 202 with an evaluate job, whose `result` holds the same once it has
    succeeded."""
    logs, job = inference_jobs.evaluate_or_job(ctx, scope=who.scope, model_id=model_id, body=body)
    return _job_response(job) if job is not None else logs


def _encode(outputs: dict[str, np.ndarray], accept: str) -> Response:
    """The predictions in the form `accept` asks for: .npy (one output), .npz (several, or
    asked for), else JSON (PredictOut's form, encoded as JSONResponse encodes it, without
    building the model over every number)."""
    wants_npy, wants_npz = NPY in accept, NPZ in accept
    if not (wants_npy or wants_npz):
        body = json.dumps({"predictions": outputs_json(outputs)}, ensure_ascii=False,
                          allow_nan=False, indent=None, separators=(",", ":"))  # fmt: skip
        return Response(body.encode("utf-8"), media_type="application/json")
    buf = io.BytesIO()
    if wants_npy and len(outputs) == 1:
        np.save(buf, next(iter(outputs.values())), allow_pickle=False)
        return Response(buf.getvalue(), media_type=NPY)
    np.savez(buf, **outputs)  # type: ignore[arg-type]
    return Response(buf.getvalue(), media_type=NPZ)


def _predict(
    ctx: AppContext, scope: Scope, model_id: uuid.UUID, body: PredictRequest, accept: str
) -> Response:
    outputs, job = inference_jobs.predict(ctx, scope=scope, model_id=model_id, body=body)
    if job is not None:
        return _job_response(job)
    assert outputs is not None
    return _encode(outputs, accept)


@router.post(
    "/{model_id}/predict",
    response_model=PredictOut,
    responses={
        200: {"content": {NPY: BINARY, NPZ: BINARY},
              "description": "Predictions: JSON, or .npy/.npz as `Accept` asks"},
        **JOB, **E404, **E409, **E413, **E422,
    },
    summary="Keras's predict",
    # Also the content types the request guard accepts for this route.
    openapi_extra={"requestBody": {"content": {media: BINARY for media in BINARY_MEDIA}}},
)  # fmt: skip
def predict_model(
    ctx: Ctx, who: Caller, model_id: uuid.UUID, body: PredictRequest, request: Request
) -> Response:
    """`x` as JSON (nested lists or dataset references), or the body an `.npy` file (the one
    input) or `.npz` (arrays named by input name, or one array), with `batch_size`,
    `checkpoint` and `job_id` in the query string. `Accept: application/x-npy` (or
    `application/x-npz`) answers in that form. Over PREDICT_SYNC_MAX_ROWS rows, or past
    SYNC_MAX_COST, a 202 with a predict job, whose outputs become a dataset
    (`result_dataset_id`)."""
    return _predict(ctx, who.scope, model_id, body, request.headers.get("accept", ""))


async def predict_binary(request: Request) -> Response:
    ctx: AppContext = request.app.state.ctx
    # This handler runs outside the dependency system: the caller is checked here.
    who = authorize(request)
    try:
        model_id = uuid.UUID(request.path_params["model_id"])
    except ValueError:
        raise InvalidInput("must be a UUID", loc=["path", "model_id"]) from None
    query = dict(request.query_params)
    unknown = sorted(set(query) - {"batch_size", "checkpoint", "job_id"})
    if unknown:
        raise InvalidInput("unknown query parameter; they are batch_size, checkpoint, job_id",
                           loc=["query", unknown[0]])  # fmt: skip
    try:
        data = await request.body()
    except BodyTooLarge as exc:
        raise PayloadTooLarge(str(exc), loc=["body"]) from exc
    fmt = BINARY_MEDIA[_media(request)]
    if fmt is None:
        fmt = "npy" if data.startswith(b"\x93NUMPY") else "npz"
    accept = request.headers.get("accept", "")

    fields: dict[str, Any] = dict(query)
    if "batch_size" in fields:
        try:
            fields["batch_size"] = int(fields["batch_size"])
        except ValueError:
            raise InvalidInput("must be an integer", loc=["query", "batch_size"]) from None

    def body_of(arrays: BodyArrays) -> PredictRequest:
        one = len(arrays.arrays) == 1
        x: Any = next(iter(arrays.arrays.values())) if one else arrays.arrays
        try:
            return PredictRequest.model_validate({**fields, "x": x})
        except ValueError as exc:
            raise InvalidInput(f"bad query parameters: {exc}", loc=["query"]) from None

    # A small .npy read in place here (no scratch files): the predict may run here too.
    small = fmt == "npy" and len(data) <= INLINE_BODY_BYTES
    in_place = BodyArrays.in_place(ctx, data) if small else None
    if in_place is not None:
        body = body_of(in_place)
        answer = _inline(ctx, who.scope, model_id, body, accept)
        if answer is not None:
            return answer
        return await run_predict(request.app.state,
                                 lambda: _predict(ctx, who.scope, model_id, body, accept),
                                 group=model_id)  # fmt: skip

    def run() -> Response:
        arrays = BodyArrays(ctx, data, fmt)
        try:
            return _predict(ctx, who.scope, model_id, body_of(arrays), accept)
        finally:
            arrays.close()

    return await run_predict(request.app.state, run, group=model_id)


def _inline(
    ctx: AppContext, scope: Scope, model_id: uuid.UUID, body: PredictRequest, accept: str
) -> Response | None:
    """The answer computed here, on the event loop, where `runs_inline` allows it and nothing
    needs more than the caches (a small predict on a model built and cached, on SQLite); None:
    the lane is to answer."""
    if not inference_jobs.runs_inline(ctx, body=body):
        return None
    try:
        with cached_only():
            return _predict(ctx, scope, model_id, body, accept)
    except NotCached:  # something changed since: the lane reads it (and builds the model)
        return None


async def predict_json(request: Request) -> Response | None:
    """predict with a JSON body, straight to the use case: what FastAPI's handler does for
    this route (the caller's role, the path's UUID, the body parsed and validated as a
    PredictRequest), without its general machinery. None when anything is not plainly valid:
    the route's own handler then answers, with its usual errors."""
    who = authorize(request)  # first, as the route's dependencies run before its body is read
    try:
        raw_id = str(request.path_params["model_id"])
        model_id = uuid.UUID(raw_id)
        if str(model_id) != raw_id.lower():  # other spellings: as the route's validation says
            return None
        data = await request.body()
        # orjson parses the numbers to the same floats as json.loads; what it refuses (NaN
        # literals, other encodings than UTF-8, deep nesting) goes the usual way.
        body = PredictRequest.model_validate(orjson.loads(data))
    except BodyTooLarge as exc:
        raise PayloadTooLarge(str(exc), loc=["body"]) from exc
    except Exception:  # a bad UUID, JSON or body: the route's handler says what is wrong
        return None
    ctx: AppContext = request.app.state.ctx
    accept = request.headers.get("accept", "")
    answer = _inline(ctx, who.scope, model_id, body, accept)
    if answer is not None:
        return answer
    return await run_predict(request.app.state,
                             lambda: _predict(ctx, who.scope, model_id, body, accept),
                             _mergeable(ctx, who.scope, model_id, body, accept),
                             group=model_id)  # fmt: skip


def _mergeable(
    ctx: AppContext, scope: Scope, model_id: uuid.UUID, body: PredictRequest, accept: str
) -> Mergeable | None:
    """How the predict lane may merge this request with others (micro-batching): when `x` is
    rows of one input (nested lists), with those whose model, caller, checkpoint and batch size
    are the same."""
    x = body.x
    if not (isinstance(x, list) and x and all(isinstance(row, list) for row in x)):
        return None
    key = (model_id, scope, body.checkpoint, body.job_id, body.batch_size)

    def run(rows: Any) -> dict[str, np.ndarray] | None:
        merged = body.model_copy(update={"x": rows})
        return inference_jobs.predict_now(ctx, scope=scope, model_id=model_id, body=merged)

    return Mergeable(key, x, run, lambda outputs: _encode(outputs, accept))


def direct_handler(name: str, media: str) -> Callable[[Request], Awaitable[Response | None]] | None:
    """The handler of route `name` for a body of `media` that needs no dependency solving, if
    there is one: the binary bodies' (.npy, .npz), or JSON's direct one (which answers None for
    a body the route's own handler must answer)."""
    if media in BINARY_MEDIA:
        return BINARY_HANDLERS.get(name)
    if media == "application/json":
        return DIRECT_JSON_HANDLERS.get(name)
    return None


# Answered by app.api.direct_routes, without FastAPI's routing.
DIRECT_ROUTES = ("predict_model",)
BINARY_HANDLERS: dict[str, Callable[[Request], Awaitable[Response]]] = {
    "predict_model": predict_binary
}
DIRECT_JSON_HANDLERS: dict[str, Callable[[Request], Awaitable[Response | None]]] = {
    "predict_model": predict_json
}
