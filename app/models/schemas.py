"""Request and response bodies of the models routes (the OpenAPI contract): a model, its
summary and listing; compile, evaluate, predict and the *_on_batch family, with the checkpoint
selector the last five share; adapt."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field, StrictInt, WithJsonSchema

from app.db.models import ModelRow
from app.engine.training.fit_args import MAX_BATCH_SIZE, MAX_CLASSES
from app.models import examples
from app.models.json_schemas import compile_field, described
from app.runtime.jsonsafe import readable
from app.runtime.schemas import Strict, strict_with_example, with_example

# Typed in the OpenAPI document only (app.models.json_schemas): the engine checks the values.
ModelConfig = Annotated[dict[str, Any], described("ModelConfig")]
CompileSpec = Annotated[dict[str, Any] | None, described("CompileRequest", nullable=True)]
Arrays = Annotated[Any, described("Arrays")]
SampleWeight = Annotated[Any, described("Arrays", nullable=True)]


def _arg(name: str) -> WithJsonSchema:
    return WithJsonSchema(compile_field(name))


class ModelCreate(Strict):
    model_config = strict_with_example({"config": examples.SEED_MODEL, "seed": 42})
    config: ModelConfig = Field(description="A Keras model JSON, as `model.to_json()` writes it")
    name: str | None = Field(default=None, max_length=200)
    seed: int | None = Field(
        default=None, ge=0, le=2**63 - 1, description="Seeds the initial weights; random if unset"
    )


class LayerSummary(BaseModel):
    name: str
    class_name: str
    output_shape: list[int | None]
    params: int
    trainable_params: int
    non_trainable_params: int


class TensorSummary(BaseModel):
    name: str
    shape: list[int | None]
    dtype: str = Field(default="float32", description="An input's is its InputLayer's")


class ModelSummary(BaseModel):
    name: str
    kind: str = Field(default="Sequential", description="`Sequential` or `Functional`")
    inputs: list[TensorSummary] = Field(default_factory=list)
    outputs: list[TensorSummary] = Field(default_factory=list)
    input_shape: list[int | None] | None = Field(description="The one input's shape (null when "
                                                 "the model has several)")  # fmt: skip
    output_shape: list[int | None] | None = Field(description="The one output's shape (null "
                                                  "when the model has several)")  # fmt: skip
    layers: list[LayerSummary]
    total_params: int
    trainable_params: int
    non_trainable_params: int


class ModelOut(BaseModel):
    model_config = with_example(examples.MODEL_OUT)
    id: uuid.UUID
    name: str
    seed: int
    summary: ModelSummary
    config: ModelConfig
    compile: CompileSpec = Field(
        description="The model's compile spec: set by POST /compile, a successful fit and "
        "train_on_batch; used by fit, evaluate and the *_on_batch routes given none"
    )
    weights: str = Field(
        description="Where the model's weights come from: `initial` (seeded), `trained` (a fit's "
        "final checkpoint, `weights_checkpoint_id`), `uploaded` (PUT /weights, or weights "
        "adapted by POST /adapt) or `on_batch` (POST /train_on_batch)"
    )
    weights_checkpoint_id: uuid.UUID | None = Field(
        description="The checkpoint whose weights the model holds, when they come from a fit"
    )
    created_at: datetime
    updated_at: datetime


class ModelList(BaseModel):
    model_config = with_example({"items": [examples.MODEL_OUT], "total": 1, "limit": 20,
                                 "offset": 0})  # fmt: skip
    items: list[ModelOut]
    total: int
    limit: int
    offset: int


X_DOC = ("Inputs: nested lists, batch dimension first. A model with several inputs takes an "
         "object keyed by input name or a list in input order")  # fmt: skip
Y_DOC = ("Targets: nested lists. A model with several outputs takes an object keyed by output "
         "name (outputs without a loss may be left out) or a list in output order")  # fmt: skip
SW_DOC = ("One weight per sample (for every output), or an object keyed by output name with one "
          "such list per output")  # fmt: skip


COMPILE_DOC = (
    "Keras compile arguments; if omitted, the model's compile spec (POST /compile, or the last "
    "successful fit's) is used"
)
CLASS_WEIGHT_DOC = (
    "Class index -> weight, turned into per-sample weights for the loss and weighted_metrics. "
    'JSON object keys are strings, so class indices are written "0", "1", ...; missing classes '
    "weigh 1. One-output models only, and not with sample_weight"
)


# -- compile, evaluate, predict, *_on_batch ------------------------------------------------------
class CompileRequest(Strict):
    """Keras's `compile()` arguments, with Keras's names, string identifiers and
    `{class_name, config}` objects."""

    model_config = strict_with_example(examples.SEED_COMPILE)
    optimizer: Annotated[Any, _arg("optimizer")] = Field(
        default=None, description="A name or {class_name, config}; rmsprop"
    )
    loss: Annotated[Any, _arg("loss")] = Field(
        default=None,
        description="A loss, a list with one per output, or an object keyed by output name",
    )
    loss_weights: Annotated[Any, _arg("loss_weights")] = None
    metrics: Annotated[Any, _arg("metrics")] = Field(
        default=None,
        description="Metrics: a list; with several outputs, one entry per output (a list in "
        "output order or an object keyed by output name)",
    )
    weighted_metrics: Annotated[Any, _arg("weighted_metrics")] = None
    steps_per_execution: Annotated[Any, _arg("steps_per_execution")] = None
    jit_compile: Annotated[Any, _arg("jit_compile")] = None
    run_eagerly: Annotated[Any, _arg("run_eagerly")] = None
    auto_scale_loss: Annotated[Any, _arg("auto_scale_loss")] = None
    dtype_policy: Annotated[Any, _arg("dtype_policy")] = None


class AtCheckpoint(Strict):
    checkpoint: str | None = Field(
        default=None, min_length=1, max_length=64,
        description="Use the weights of this checkpoint instead of the model's current weights: "
        "an id, `epoch:N` (0-based), `latest` or `best` (by the job's ModelCheckpoint monitor "
        "and mode, else val_loss, else loss)",
    )  # fmt: skip
    # A JSON string: strict mode would take only a UUID object.
    job_id: Annotated[uuid.UUID, Field(strict=False)] | None = Field(
        default=None,
        description="The fit job whose checkpoint `checkpoint` names; by default the model's "
        "most recent job. Only with `checkpoint`",
    )


class EvaluateRequest(AtCheckpoint):
    model_config = strict_with_example(examples.SEED_EVALUATE)
    compile: CompileSpec = Field(default=None, description=COMPILE_DOC)
    x: Arrays = Field(description=X_DOC)
    y: Arrays = Field(description=Y_DOC)
    sample_weight: SampleWeight = Field(default=None, description=SW_DOC)
    batch_size: StrictInt | None = Field(default=None, ge=1, le=MAX_BATCH_SIZE)
    verbose: int | str | None = None


class PredictRequest(AtCheckpoint):
    model_config = strict_with_example(examples.SEED_PREDICT)
    x: Arrays = Field(description=X_DOC)
    batch_size: StrictInt | None = Field(default=None, ge=1, le=MAX_BATCH_SIZE)
    verbose: int | str | None = None


class TestOnBatchRequest(AtCheckpoint):
    model_config = strict_with_example(examples.SEED_ON_BATCH)
    compile: CompileSpec = Field(default=None, description=COMPILE_DOC)
    x: Arrays = Field(description=X_DOC + "; all of it is one batch")
    y: Arrays = Field(description=Y_DOC)
    sample_weight: SampleWeight = Field(default=None, description=SW_DOC)


class TrainOnBatchRequest(TestOnBatchRequest):
    class_weight: dict[str, float] | None = Field(
        default=None, max_length=MAX_CLASSES, description=CLASS_WEIGHT_DOC
    )


class PredictOnBatchRequest(AtCheckpoint):
    model_config = strict_with_example(examples.SEED_PREDICT)
    x: Arrays = Field(description=X_DOC + "; all of it is one batch")


# -- adapt -------------------------------------------------------------------------------------
class AdaptRequest(Strict):
    model_config = strict_with_example(examples.SEED_ADAPT)
    x: Arrays = Field(description=X_DOC)
    layers: list[Annotated[str, Field(min_length=1, max_length=200)]] | None = Field(
        default=None,
        min_length=1,
        max_length=1000,
        description="The Normalization layers to adapt, by name; by default every one without "
        "mean and variance in its config",
    )
    batch_size: StrictInt | None = Field(default=None, ge=1, le=MAX_BATCH_SIZE)


class AdaptOut(BaseModel):
    model_config = with_example({"adapted": ["normalization"], "model": examples.MODEL_OUT})
    adapted: list[str] = Field(description="The adapted layers, in the order the model calls them")
    model: ModelOut


# -- predict ---------------------------------------------------------------------------------------
class PredictOut(BaseModel):
    model_config = with_example(examples.PREDICT_OUT)
    predictions: list[Any] | dict[str, list[Any]] = Field(
        description="Nested lists; for a model with several outputs, an object keyed by output name"
    )


# What evaluate, test_on_batch and train_on_batch answer: Keras's logs, return_dict=True.
Logs = Annotated[dict[str, float | None], Field(examples=[examples.LOGS])]


def model_out(row: ModelRow) -> ModelOut:
    # `readable`: a row stored before lone surrogates were refused must not break a listing.
    return ModelOut(
        id=row.id, name=readable(row.name), seed=row.seed,
        summary=ModelSummary(**readable(row.summary)),
        config=readable(row.config), compile=readable(row.compile_config),
        weights_checkpoint_id=row.weights_checkpoint_id,
        weights=weights_source(row),
        created_at=row.created_at, updated_at=row.updated_at,
    )  # fmt: skip


def weights_source(row: ModelRow) -> str:
    if row.weights_key is None:
        return "initial"
    if row.weights_checkpoint_id is not None:
        return "trained"
    # train_on_batch names its files so (see app.models.on_batch)
    return "on_batch" if f"models/{row.id}/on-batch-" in row.weights_key else "uploaded"
