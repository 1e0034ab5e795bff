"""The standard predict protocols translated to and from Keras's predict: TensorFlow Serving's
REST predict (row and columnar formats) and the Open Inference Protocol (KServe V2) with its
binary tensor data extension.

Both run the very code of a synchronous POST /v1/models/{id}/predict (`predict_arrays`) on the
model's current weights, so their numbers are that route's. Both protocols answer in the request:
what /v1 would queue as a job (over PREDICT_SYNC_MAX_ROWS rows, or past SYNC_MAX_COST) is a 413
here that names the limit and the route that runs it as a job. Errors name the protocol's own
field (`body.instances.1.b`, `body.inputs.0.data`), not the `x` they become."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from pydantic import ValidationError

from app.core.errors import AppError, InvalidInput, PayloadTooLarge
from app.datasets.refs import Resolver
from app.db.scope import Scope
from app.models.cost import CostTooHigh, over_sync_cost, rows_of
from app.models.inference import outputs_json, predict_arrays
from app.models.schemas import PredictRequest
from app.models.service import BODY, current_model, get_model, model_graph
from app.models.serving_schemas import TFPredictRequest, V2InferRequest, V2InputTensor
from app.runtime.context import AppContext
from app.runtime.jsonsafe import safe_nested

PLATFORM = "fitapi_keras"
VERSION = "1"  # one version: the model's current weights
SIGNATURE = "serving_default"
# V2 datatypes and their little-endian numpy types; BYTES and BF16 have none here.
V2_NUMPY: dict[str, np.dtype[Any]] = {
    name: np.dtype(code).newbyteorder("<")
    for name, code in (("BOOL", "?"), ("UINT8", "u1"), ("UINT16", "u2"), ("UINT32", "u4"),
                       ("UINT64", "u8"), ("INT8", "i1"), ("INT16", "i2"), ("INT32", "i4"),
                       ("INT64", "i8"), ("FP16", "f2"), ("FP32", "f4"), ("FP64", "f8"))
}  # fmt: skip
V2_OF_NUMPY = {dtype.name: name for name, dtype in V2_NUMPY.items()}
# A bfloat16 input is advertised as FP32: numpy has no bfloat16, so infer takes FP32 data and
# the model casts it, as /v1 predict does with JSON numbers.
KERAS_V2 = {"bool": "BOOL", "uint8": "UINT8", "int32": "INT32", "int64": "INT64",
            "float16": "FP16", "bfloat16": "FP32", "float32": "FP32",
            "float64": "FP64"}  # fmt: skip


def predict_now(
    ctx: AppContext, *, scope: Scope, model_id: uuid.UUID, x: Any, field: list[str | int]
) -> dict[str, np.ndarray]:
    """The outputs of a synchronous /v1 predict of `x`, keyed by output name in output order;
    a 413 naming `field` where /v1 would queue a job."""
    row = current_model(ctx, scope=scope, model_id=model_id)
    resolved = Resolver(ctx, scope=Scope.of_project(row.project_id)).resolve(x, [BODY, "x"])
    graph = model_graph(ctx, row)  # the estimate reads the model's graph, as /v1 predict's does
    rows, most = rows_of(resolved), ctx.settings.predict_sync_max_rows
    job_form = f"POST /v1/models/{model_id}/predict, which runs it as a job"
    if rows > most:
        raise PayloadTooLarge(f"{rows} rows are past PREDICT_SYNC_MAX_ROWS ({most}); this "
                              f"protocol answers at once, so send fewer rows, or use {job_form}",
                              loc=field)  # fmt: skip
    if over_sync_cost(ctx.settings, graph, resolved, purpose="predict"):
        raise CostTooHigh(f"predicting {rows} rows is estimated past SYNC_MAX_COST "
                          f"({ctx.settings.sync_max_cost}); this protocol answers at once, so "
                          f"send fewer rows, or use {job_form}", loc=field)  # fmt: skip
    body = PredictRequest.model_validate({"x": x})
    return predict_arrays(ctx, scope=scope, model_id=model_id, body=body, row=row)


@contextmanager
def named_as(
    field: list[str | int], names: dict[str, int] | None = None, *, rows: bool = False
) -> Iterator[None]:
    """Errors about `body.x` renamed to the protocol's `field`: with `names` (V2), an input's
    name after `x` becomes its tensor's index; with `rows` (TF's instances, an object per row),
    an input's name and a row index swap."""
    try:
        yield
    except AppError as exc:
        loc = exc.loc
        if loc[:2] == [BODY, "x"]:
            rest = loc[2:]
            if rows and len(rest) > 1 and isinstance(rest[0], str):
                rest = [rest[1], rest[0], *rest[2:]]  # instances.<row>.<input>
            elif names is not None and rest and isinstance(rest[0], str) and rest[0] in names:
                rest = [names[rest[0]], "data", *rest[1:]]
            elif names is not None and len(names) == 1 and field[-1] == "inputs":
                rest = [0, "data", *rest]
            exc.loc = [*field, *rest]
        raise


# -- TensorFlow Serving ------------------------------------------------------------------------
def _is_b64(value: Any) -> bool:
    return isinstance(value, dict) and "b64" in value


def _columns(instances: Any) -> Any:
    """Row-format instances as Keras's x: the list itself, or for objects keyed by input name
    one list per input."""
    where: list[str | int] = [BODY, "instances"]
    if not isinstance(instances, list) or not instances:
        raise InvalidInput("must be a non-empty list, one entry per sample", loc=where)
    if not any(isinstance(i, dict) for i in instances):
        return instances
    keys = list(instances[0]) if isinstance(instances[0], dict) else []
    for i, inst in enumerate(instances):
        if _is_b64(inst):
            raise InvalidInput("binary (b64) values are not accepted: inputs are numeric",
                               loc=[*where, i])  # fmt: skip
        if not isinstance(inst, dict) or set(inst) != set(keys):
            raise InvalidInput(f"every instance must be an object with the keys of the first "
                               f"({', '.join(keys) or 'none'})", loc=[*where, i])  # fmt: skip
        for key, value in inst.items():
            if _is_b64(value):
                raise InvalidInput("binary (b64) values are not accepted: inputs are numeric",
                                   loc=[*where, i, key])  # fmt: skip
    return {key: [inst[key] for inst in instances] for key in keys}


def tf_predict(
    ctx: AppContext, *, scope: Scope, model_id: uuid.UUID, body: TFPredictRequest
) -> dict[str, Any]:
    """`{"predictions"}` for `instances`, `{"outputs"}` for `inputs`."""
    if body.signature_name not in (None, SIGNATURE):
        raise InvalidInput(f"unknown signature; the one signature is {SIGNATURE!r}",
                           loc=[BODY, "signature_name"])  # fmt: skip
    if (body.instances is None) == (body.inputs is None):
        raise InvalidInput('send exactly one of "instances" (row format) or "inputs" (columnar)',
                           loc=[BODY])  # fmt: skip
    if body.instances is not None:
        x = _columns(body.instances)
        field: list[str | int] = [BODY, "instances"]
        with named_as(field, rows=isinstance(x, dict)):
            outputs = predict_now(ctx, scope=scope, model_id=model_id, x=x, field=field)
        answer = outputs_json(outputs)
        if isinstance(answer, dict):  # several outputs: an object per instance
            rows = len(next(iter(answer.values())))
            return {"predictions": [{k: v[i] for k, v in answer.items()} for i in range(rows)]}
        return {"predictions": answer}
    if _is_b64(body.inputs):
        raise InvalidInput("binary (b64) values are not accepted: inputs are numeric",
                           loc=[BODY, "inputs"])  # fmt: skip
    field = [BODY, "inputs"]
    with named_as(field):
        outputs = predict_now(ctx, scope=scope, model_id=model_id, x=body.inputs, field=field)
    return {"outputs": outputs_json(outputs)}


# -- Open Inference Protocol -------------------------------------------------------------------
def v2_metadata(ctx: AppContext, *, scope: Scope, model_id: uuid.UUID) -> dict[str, Any]:
    """Name, version, platform, and the inputs and outputs with datatypes and shapes (-1 for the
    batch dimension and any open one)."""
    row = get_model(ctx, scope=scope, model_id=model_id)

    def shape(dims: list[int | None]) -> list[int]:
        return [-1 if d is None else int(d) for d in dims]

    summary = row.summary
    return {
        "name": str(row.id), "versions": [VERSION], "platform": PLATFORM,
        "inputs": [{"name": i["name"], "datatype": KERAS_V2.get(i.get("dtype", ""), "FP32"),
                    "shape": shape(i["shape"])} for i in summary.get("inputs", [])],
        # The outputs of predict are float32, whatever the dtype policy computed in.
        "outputs": [{"name": o["name"], "datatype": "FP32", "shape": shape(o["shape"])}
                    for o in summary.get("outputs", [])],
    }  # fmt: skip


def _tensor(
    tensor: V2InputTensor, where: list[str | int], binary: bytes, offset: int
) -> tuple[Any, int]:
    """One input tensor as an array of its shape, and the offset past its binary data."""
    dtype = V2_NUMPY.get(tensor.datatype)
    if dtype is None:
        known = ", ".join(V2_NUMPY)
        why = ("BYTES tensors are not accepted: the model's inputs are numeric"
               if tensor.datatype == "BYTES" else f"unknown datatype; one of {known}")  # fmt: skip
        raise InvalidInput(why, loc=[*where, "datatype"])
    size = math.prod(tensor.shape)
    size_of = (tensor.parameters or {}).get("binary_data_size")
    if size_of is not None:
        at = [*where, "parameters", "binary_data_size"]
        if tensor.data is not None:
            raise InvalidInput("send either data or binary_data_size, not both", loc=at)
        if type(size_of) is not int or size_of != size * dtype.itemsize:
            raise InvalidInput(f"must be the tensor's bytes, {size * dtype.itemsize} for shape "
                               f"{tensor.shape} of {tensor.datatype}", loc=at)  # fmt: skip
        if offset + size_of > len(binary):
            raise InvalidInput("runs past the end of the body's binary data", loc=at)
        arr = np.frombuffer(binary, dtype=dtype, count=size, offset=offset)
        return arr.reshape(tensor.shape).astype(
            dtype.newbyteorder("="), copy=True
        ), offset + size_of
    at = [*where, "data"]
    if tensor.data is None:
        raise InvalidInput("is required (or parameters.binary_data_size, binary)", loc=at)
    try:
        raw = np.asarray(tensor.data)
    except (ValueError, TypeError, OverflowError):
        raw = np.asarray(None)
    kinds = "b" if tensor.datatype == "BOOL" else "iu" if dtype.kind in "iu" else "iuf"
    if raw.dtype.kind not in kinds:
        what = {"b": "true or false", "iu": "integers"}.get(kinds, "numbers")
        raise InvalidInput(f"must be {what} for {tensor.datatype}, flat or nested row-major "
                           "(nested lists of one length)", loc=at)  # fmt: skip
    if raw.size != size:
        raise InvalidInput(f"has {raw.size} values; the shape {tensor.shape} needs {size}", loc=at)
    arr = raw.astype(dtype.newbyteorder("="))
    if dtype.kind in "iu" and not np.array_equal(arr, raw):
        raise InvalidInput(f"holds values outside the range of {tensor.datatype}", loc=at)
    return arr.reshape(tensor.shape), offset


def _inputs(body: V2InferRequest, names: list[str], binary: bytes) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for i, tensor in enumerate(body.inputs):
        where: list[str | int] = [BODY, "inputs", i]
        if tensor.name not in names:
            raise InvalidInput(f"unknown input; the model's inputs are {', '.join(names)}",
                               loc=[*where, "name"])  # fmt: skip
        if tensor.name in arrays:
            raise InvalidInput("names an input a second time", loc=[*where, "name"])
        arrays[tensor.name], offset = _tensor(tensor, where, binary, offset)
    missing = [n for n in names if n not in arrays]
    if missing:
        raise InvalidInput(f"missing input {', '.join(missing)}", loc=[BODY, "inputs"])
    if offset != len(binary):
        raise InvalidInput(f"{len(binary) - offset} bytes follow the JSON header that no "
                           "input's binary_data_size claims",
                           loc=["header", "Inference-Header-Content-Length"])  # fmt: skip
    return arrays


def _flag(parameters: dict[str, Any] | None, name: str, default: bool, where: list[str | int]
          ) -> bool:  # fmt: skip
    value = (parameters or {}).get(name, default)
    if not isinstance(value, bool):
        raise InvalidInput("must be true or false", loc=[*where, name])
    return value


def v2_infer(
    ctx: AppContext, *, scope: Scope, model_id: uuid.UUID, body: V2InferRequest, binary: bytes
) -> tuple[dict[str, Any], bytes]:
    """The response's JSON and the binary data after it (empty when every output is JSON)."""
    if body.model_name not in (None, str(model_id)):
        raise InvalidInput("is not the model of the path", loc=[BODY, "model_name"])
    row = current_model(ctx, scope=scope, model_id=model_id)
    names = [i["name"] for i in row.summary["inputs"]]
    arrays = _inputs(body, names, binary)
    index = {t.name: i for i, t in enumerate(body.inputs)}
    x: Any = arrays[names[0]] if len(names) == 1 else arrays
    field: list[str | int] = [BODY, "inputs"]
    with named_as(field, index):
        outputs = predict_now(ctx, scope=scope, model_id=model_id, x=x, field=field)
    everything = _flag(body.parameters, "binary_data_output", False, [BODY, "parameters"])
    asked = body.outputs if body.outputs is not None else []
    wanted = []
    for i, out in enumerate(asked):
        where: list[str | int] = [BODY, "outputs", i]
        if out.name not in outputs:
            raise InvalidInput(f"unknown output; the model's outputs are {', '.join(outputs)}",
                               loc=[*where, "name"])  # fmt: skip
        wanted.append((out.name, _flag(out.parameters, "binary_data", everything,
                                       [*where, "parameters"])))  # fmt: skip
    tensors, blobs = [], []
    for name, in_binary in wanted or [(n, everything) for n in outputs]:
        arr = outputs[name]
        entry: dict[str, Any] = {"name": name, "shape": list(arr.shape),
                                 "datatype": V2_OF_NUMPY.get(arr.dtype.name, "FP32")}  # fmt: skip
        if in_binary:
            blob = arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = list(safe_nested(arr.reshape(-1).tolist()))
        tensors.append(entry)
    answer: dict[str, Any] = {"model_name": str(model_id), "model_version": VERSION}
    if body.id is not None:
        answer["id"] = body.id
    answer["outputs"] = tensors
    return answer, b"".join(blobs)


def split_binary(data: bytes, header_length: str | None) -> tuple[V2InferRequest, bytes]:
    """A binary-extension body: its JSON header (`Inference-Header-Content-Length` bytes, the
    whole body without the header) and the tensor bytes after it."""
    where: list[str | int] = ["header", "Inference-Header-Content-Length"]
    length = len(data)
    if header_length is not None:
        if not header_length.strip().isdigit() or int(header_length) > len(data):
            raise InvalidInput(f"must be the JSON header's length in bytes, at most the body's "
                               f"{len(data)}", loc=where)  # fmt: skip
        length = int(header_length)
    try:
        body = V2InferRequest.model_validate_json(data[:length])
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            raise InvalidInput("the body's first bytes are not a JSON inference request; "
                               "Inference-Header-Content-Length says how many they are",
                               loc=[BODY]) from None  # fmt: skip
        raise InvalidInput(str(first["msg"]), loc=[BODY, *first["loc"]]) from None
    return body, data[length:]
