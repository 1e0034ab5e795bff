"""Request and response bodies of the standard predict protocols: TensorFlow Serving's REST
predict and the Open Inference Protocol (KServe V2) over HTTP/JSON, with the examples the
OpenAPI document shows (the protocols' own, on the seed model's one input and one output)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from app.runtime.schemas import strict_with_example

Name = Annotated[str, Field(min_length=1, max_length=200)]
Parameters = Annotated[dict[str, Any], Field(max_length=100)]
SEED_ROWS = [[-20.0], [0.0], [29.9]]
SEED_PREDICTIONS = [[0.0211], [0.0423], [0.9834]]


def _example(value: dict[str, Any]) -> ConfigDict:
    return ConfigDict(json_schema_extra={"examples": [value]})


# -- TensorFlow Serving --------------------------------------------------------------------------
class TFPredictRequest(BaseModel):
    model_config = strict_with_example({"instances": SEED_ROWS})
    signature_name: str | None = Field(
        default=None, max_length=200,
        description='The one signature is "serving_default", the default',
    )  # fmt: skip
    instances: Any = Field(
        default=None,
        description="Row format: one entry per sample; for several inputs each an object keyed "
        "by input name",
    )
    inputs: Any = Field(
        default=None,
        description="Columnar format: the batch as one array, or an object of arrays keyed by "
        "input name",
    )


class TFPredictOut(BaseModel):
    model_config = _example({"predictions": SEED_PREDICTIONS})
    predictions: Any = Field(
        default=None,
        description="Answer to `instances`: one entry per sample; for several outputs each an "
        "object keyed by output name",
    )
    outputs: Any = Field(
        default=None,
        description="Answer to `inputs`: the array, or for several outputs an object of arrays "
        "keyed by output name",
    )


class ProtocolErrorOut(BaseModel):
    """The protocols' error shape (`error`), with the API's own `detail` beside it."""

    model_config = _example({
        "error": "body.inputs.0.shape: has 3 values; the shape [3, 2] needs 6",
        "detail": [{"loc": ["body", "inputs", 0, "shape"], "type": "value_error",
                    "msg": "has 3 values; the shape [3, 2] needs 6"}],
    })  # fmt: skip
    error: str
    detail: list[dict[str, Any]] = Field(default_factory=list)


# -- Open Inference Protocol (KServe V2) --------------------------------------------------------
class V2InputTensor(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)
    name: Name
    shape: list[Annotated[StrictInt, Field(ge=0, le=1 << 40)]] = Field(max_length=32)
    datatype: str = Field(max_length=16, description="FP32, FP64, INT32, INT64, UINT8, BOOL, ...")
    parameters: Parameters | None = Field(
        default=None, description="`binary_data_size`: the tensor's bytes follow the JSON header"
    )
    data: Any = Field(default=None, description="The values in row-major order, flat or nested")


class V2OutputRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)
    name: Name
    parameters: Parameters | None = Field(
        default=None, description="`binary_data`: true answers this output in binary"
    )


class V2InferRequest(BaseModel):
    model_config = strict_with_example({
        "id": "42",
        "inputs": [{"name": "input_layer", "shape": [3, 1], "datatype": "FP32",
                    "data": [-20.0, 0.0, 29.9]}],
        "outputs": [{"name": "dense_1"}],
    })  # fmt: skip
    id: str | None = Field(default=None, max_length=200)
    model_name: str | None = Field(
        default=None, max_length=200, description="If given, the model id of the path"
    )
    model_version: str | None = Field(default=None, max_length=200)
    parameters: Parameters | None = Field(
        default=None, description="`binary_data_output`: true answers every output in binary"
    )
    inputs: list[V2InputTensor] = Field(min_length=1, max_length=1000)
    outputs: list[V2OutputRequest] | None = Field(
        default=None, max_length=1000, description="The outputs to answer; by default all"
    )


class V2OutputTensor(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class V2InferOut(BaseModel):
    model_config = _example({
        "model_name": "0b9e4bd2-5d7c-4b8e-9a51-1f0b8c9d2e11", "model_version": "1", "id": "42",
        "outputs": [{"name": "dense_1", "shape": [3, 1], "datatype": "FP32",
                     "data": [0.0211, 0.0423, 0.9834]}],
    })  # fmt: skip
    model_name: str
    model_version: str | None = None
    id: str | None = None
    outputs: list[V2OutputTensor]


class V2TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1 for the batch dimension and any open one")


class V2ModelMetadata(BaseModel):
    model_config = _example({
        "name": "0b9e4bd2-5d7c-4b8e-9a51-1f0b8c9d2e11", "versions": ["1"],
        "platform": "fitapi_keras",
        "inputs": [{"name": "input_layer", "datatype": "FP32", "shape": [-1, 1]}],
        "outputs": [{"name": "dense_1", "datatype": "FP32", "shape": [-1, 1]}],
    })  # fmt: skip
    name: str
    versions: list[str]
    platform: str
    inputs: list[V2TensorMetadata]
    outputs: list[V2TensorMetadata]


class V2ModelReady(BaseModel):
    model_config = _example({"name": "0b9e4bd2-5d7c-4b8e-9a51-1f0b8c9d2e11", "ready": True})
    name: str
    ready: bool


class V2ServerMetadata(BaseModel):
    model_config = _example(
        {"name": "fitapi", "version": "0.1.0", "extensions": ["binary_tensor_data"]}
    )
    name: str
    version: str
    extensions: list[str]


class V2Live(BaseModel):
    model_config = _example({"live": True})
    live: bool


class V2Ready(BaseModel):
    model_config = _example({"ready": True})
    ready: bool
