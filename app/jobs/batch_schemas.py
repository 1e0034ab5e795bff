"""Request bodies of the compile, evaluate, predict and *_on_batch routes (the OpenAPI
contract), with the checkpoint selector the last five share."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import Field, StrictInt

from app.jobs import examples
from app.jobs.schemas import SW_DOC, X_DOC, Y_DOC, Strict, strict_with_example

COMPILE_DOC = (
    "Keras compile arguments; if omitted, the model's compile spec (POST /compile, or the last "
    "successful fit's) is used"
)
CLASS_WEIGHT_DOC = (
    "Class index -> weight, turned into per-sample weights for the loss and weighted_metrics. "
    'JSON object keys are strings, so class indices are written "0", "1", ...; missing classes '
    "weigh 1. One-output models only, and not with sample_weight"
)


class CompileRequest(Strict):
    """Keras's `compile()` arguments, with Keras's names, string identifiers and
    `{class_name, config}` objects."""

    model_config = strict_with_example(examples.SEED_COMPILE)
    optimizer: Any = Field(default=None, description="A name or {class_name, config}; rmsprop")
    loss: Any = Field(
        default=None,
        description="A loss, a list with one per output, or an object keyed by output name",
    )
    loss_weights: Any = None
    metrics: Any = Field(
        default=None,
        description="Metrics: a list; with several outputs, one entry per output (a list in "
        "output order or an object keyed by output name)",
    )
    weighted_metrics: Any = None
    steps_per_execution: Any = None
    jit_compile: Any = None
    run_eagerly: Any = None
    auto_scale_loss: Any = None
    dtype_policy: Any = None


class AtCheckpoint(Strict):
    checkpoint: str | None = Field(
        default=None, min_length=1, max_length=64,
        description="Use the weights of this checkpoint instead of the model's current weights: "
        "an id, `epoch:N` (0-based), `latest` or `best` (by the job's ModelCheckpoint monitor "
        "and mode, else val_loss, else loss)",
    )  # fmt: skip
    job_id: uuid.UUID | None = Field(
        default=None,
        description="The fit job whose checkpoint `checkpoint` names; by default the model's "
        "most recent job. Only with `checkpoint`",
    )


class EvaluateRequest(AtCheckpoint):
    model_config = strict_with_example(examples.SEED_EVALUATE)
    compile: dict[str, Any] | None = Field(default=None, description=COMPILE_DOC)
    x: Any = Field(description=X_DOC)
    y: Any = Field(description=Y_DOC)
    sample_weight: Any = Field(default=None, description=SW_DOC)
    batch_size: StrictInt | None = Field(default=None, ge=1, le=1 << 20)
    verbose: int | str | None = None


class PredictRequest(AtCheckpoint):
    model_config = strict_with_example(examples.SEED_PREDICT)
    x: Any = Field(description=X_DOC)
    batch_size: StrictInt | None = Field(default=None, ge=1, le=1 << 20)
    verbose: int | str | None = None


class TestOnBatchRequest(AtCheckpoint):
    model_config = strict_with_example(examples.SEED_ON_BATCH)
    compile: dict[str, Any] | None = Field(default=None, description=COMPILE_DOC)
    x: Any = Field(description=X_DOC + "; all of it is one batch")
    y: Any = Field(description=Y_DOC)
    sample_weight: Any = Field(default=None, description=SW_DOC)


class TrainOnBatchRequest(TestOnBatchRequest):
    class_weight: dict[str, float] | None = Field(
        default=None, max_length=100_000, description=CLASS_WEIGHT_DOC
    )


class PredictOnBatchRequest(AtCheckpoint):
    model_config = strict_with_example(examples.SEED_PREDICT)
    x: Any = Field(description=X_DOC + "; all of it is one batch")
