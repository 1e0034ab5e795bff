"""Request and response bodies of the jobs routes (the OpenAPI contract): fit, resume, a job
with its history, its epoch rows and its checkpoints."""

from __future__ import annotations

import uuid
from dataclasses import fields
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, get_type_hints

from pydantic import BaseModel, Field, StrictInt, WithJsonSchema, create_model

from app.db.models import CheckpointRow, EpochLogRow, JobRow
from app.engine.training.fit_args import MAX_EPOCHS, FitArgs
from app.models import examples
from app.models.json_schemas import ref
from app.models.schemas import SW_DOC, X_DOC, Y_DOC, Arrays, CompileSpec, SampleWeight
from app.runtime.schemas import Strict, strict_with_example, with_example

FIT_ARG_NAMES = tuple(f.name for f in fields(FitArgs))

# A fit of the seed model (app.models.examples) that has run two of its epochs.
JOB_ID = "c4609ebc-eb79-4c9c-a959-be9e773d1c57"
_LOGS = [
    {"accuracy": 0.5714, "loss": 0.6931, "val_accuracy": 0.7143, "val_loss": 0.5874},
    {"accuracy": 0.7143, "loss": 0.5874, "val_accuracy": 0.8571, "val_loss": 0.4809},
]
_AT = "2026-12-07T14:35:16.505970Z"
JOB_EXAMPLE: dict[str, Any] = {
    "id": JOB_ID, "model_id": examples.MODEL_ID, "kind": "fit", "status": "running",
    "attempt": 1, "max_attempts": 3, "epochs": 300, "epochs_done": 2, "cancel_requested": False,
    "history": {key: [logs[key] for logs in _LOGS] for key in _LOGS[0]}, "error": None,
    "parent_job_id": None, "start_checkpoint_id": None, "result": None,
    "result_dataset_id": None, "created_at": "2026-12-07T14:35:16.461341Z",
    "started_at": "2026-12-07T14:35:16.474096Z", "finished_at": None,
}  # fmt: skip
CHECKPOINT_EXAMPLE: dict[str, Any] = {
    "id": "60c8bf53-b65d-4643-be1e-a19955e67f59", "job_id": JOB_ID, "epoch": 1, "attempt": 1,
    "logs": _LOGS[1], "size_bytes": 8008, "created_at": _AT, "trigger": "periodic",
    "batch": None, "monitor": None, "mode": None,
}  # fmt: skip


# -- fit ---------------------------------------------------------------------------------------
# Typed in the OpenAPI document only: each callback's class and config are the engine's to check.
Callbacks = Annotated[
    list[dict[str, Any]],
    WithJsonSchema({"type": "array", "items": ref("Callback"), "maxItems": 32}),
]


class ValidationData(Strict):
    x: Arrays
    y: Arrays
    sample_weight: SampleWeight = None


class _FitData(Strict):
    """The fit body's fields before its fit arguments: the compile spec and the data."""

    compile: CompileSpec = Field(
        default=None,
        description="Keras compile arguments; if omitted, the model's last compile spec is used",
    )
    x: Arrays = Field(description=X_DOC)
    y: Arrays = Field(description=Y_DOC)
    sample_weight: SampleWeight = Field(default=None, description=SW_DOC)
    validation_data: ValidationData | None = None


def _with_fit_args(base: type[_FitData]) -> type[_FitData]:
    """`base` with a field for each of the engine's fit arguments (`FitArgs`), in its order,
    taking the argument's name, type with its bounds, default and description from its
    dataclass field: the fit arguments are declared once, in the engine."""
    hints = get_type_hints(FitArgs, include_extras=True)
    arguments: dict[str, Any] = {
        f.name: (hints[f.name], Field(default=f.default, description=f.metadata.get("doc")))
        for f in fields(FitArgs)
    }
    return create_model("_FitArguments", __base__=base, __module__=__name__, **arguments)


if TYPE_CHECKING:  # the generated fields are read through FitRequest.fit_args()
    _FitArguments = _FitData
else:
    _FitArguments = _with_fit_args(_FitData)


class FitRequest(_FitArguments):
    model_config = strict_with_example(examples.SEED_FIT)
    callbacks: Callbacks = Field(default_factory=list, max_length=32)
    adapt: bool = Field(
        default=False,
        description="Before training, adapt every Normalization layer still at its initial state "
        "(mean 0, variance 1) on the training inputs (after validation_split), as Keras users "
        "call layer.adapt(x_train) before fit",
    )
    verbose: int | str | None = Field(default=None, description="Accepted for Keras parity")

    def fit_args(self) -> FitArgs:
        """The engine's fit arguments: this body's fields of the same names."""
        return FitArgs(**{name: getattr(self, name) for name in FIT_ARG_NAMES})


class ResumeRequest(Strict):
    model_config = strict_with_example(examples.SEED_RESUME)
    checkpoint: str = Field(
        default="latest", min_length=1, max_length=64,
        description="The checkpoint to continue from: an id, `epoch:N`, `best` or `latest` (the "
        "last epoch-end checkpoint, where a crashed attempt would resume). A mid-epoch "
        "ModelCheckpoint save is no resume point",
    )  # fmt: skip
    epochs: StrictInt | None = Field(
        default=None, ge=1, le=MAX_EPOCHS,
        description="Train up to this epoch count, as fit's `epochs`; the parent job's by "
        "default. The new job's initial_epoch is the checkpoint's epoch + 1, which this must "
        "exceed",
    )  # fmt: skip


# The resume route's body is optional, so its examples are the route's, not the schema's.
RESUME_EXAMPLES: dict[str, Any] = {
    "latest": {"summary": "From the last epoch's checkpoint, up to 600 epochs",
               "value": examples.SEED_RESUME},
    "best": {"summary": "From the best checkpoint, to the parent's epochs",
             "value": {"checkpoint": "best"}},
}  # fmt: skip


class JobError(BaseModel):
    type: str
    message: str


class JobOut(BaseModel):
    model_config = with_example(JOB_EXAMPLE)
    id: uuid.UUID
    model_id: uuid.UUID
    kind: str = Field(description="fit, predict or evaluate (a predict or evaluate over more "
                      "rows than PREDICT_SYNC_MAX_ROWS)")  # fmt: skip
    status: str = Field(description="queued, running, succeeded, failed or cancelled")
    attempt: int
    max_attempts: int
    epochs: int
    epochs_done: int
    cancel_requested: bool
    history: dict[str, list[float | None]] = Field(
        description="Keras's History.history so far; a non-finite value (a diverged fit) is null. "
        "A resumed job's history holds its own epochs only, as fit with initial_epoch returns"
    )
    error: JobError | None
    parent_job_id: uuid.UUID | None = Field(
        default=None, description="The job this one resumes (POST /v1/jobs/{id}/resume)"
    )
    start_checkpoint_id: uuid.UUID | None = Field(
        default=None,
        description="The parent's checkpoint whose training state this job starts from",
    )
    result: dict[str, float | None] | None = Field(
        default=None, description="An evaluate job's loss and metrics, once it has succeeded"
    )
    result_dataset_id: uuid.UUID | None = Field(
        default=None,
        description="A predict job's outputs, once it has succeeded: a dataset with one array "
        "per output name (GET /v1/datasets/{id}/arrays/{name})",
    )
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobList(BaseModel):
    model_config = with_example({"items": [JOB_EXAMPLE]})
    items: list[JobOut]


class EpochLog(BaseModel):
    epoch: int = Field(description="0-based, as Keras callbacks see it")
    logs: dict[str, float | None]
    attempt: int
    created_at: datetime


class EpochLogList(BaseModel):
    model_config = with_example({"job_id": JOB_ID, "items": [
        {"epoch": epoch, "logs": logs, "attempt": 1, "created_at": _AT}
        for epoch, logs in enumerate(_LOGS)
    ]})  # fmt: skip
    job_id: uuid.UUID
    items: list[EpochLog]


class CheckpointOut(BaseModel):
    id: uuid.UUID
    job_id: uuid.UUID
    epoch: int = Field(description="0-based: the weights as that epoch ended")
    attempt: int
    logs: dict[str, float | None]
    size_bytes: int
    created_at: datetime
    trigger: str = Field(description="`periodic`, `final` or `model_checkpoint` (a callback)")
    batch: int | None = Field(
        default=None, description="0-based batch of a mid-epoch ModelCheckpoint save"
    )
    monitor: str | None = Field(default=None, description="What selects the job's `best`")
    mode: str | None = Field(default=None, description="`min` or `max`, for `monitor`")

    @classmethod
    def of(cls, row: CheckpointRow) -> CheckpointOut:
        return cls(id=row.id, job_id=row.job_id, epoch=row.epoch, attempt=row.attempt,
                   logs=row.logs, size_bytes=row.size_bytes, created_at=row.created_at,
                   trigger=row.trigger, batch=row.batch, monitor=row.monitor,
                   mode=row.mode)  # fmt: skip


class CheckpointList(BaseModel):
    model_config = with_example({"job_id": JOB_ID, "items": [CHECKPOINT_EXAMPLE]})
    job_id: uuid.UUID
    items: list[CheckpointOut]


def job_out(row: JobRow, history: dict[str, list[float | None]]) -> JobOut:
    error = None if row.error_type is None else JobError(
        type=row.error_type, message=row.error_message or ""
    )  # fmt: skip
    return JobOut(
        id=row.id, model_id=row.model_id, kind=row.kind, status=row.status, attempt=row.attempt,
        max_attempts=row.max_attempts, epochs=row.epochs, epochs_done=row.epochs_done,
        cancel_requested=row.cancel_requested, history=history, error=error,
        parent_job_id=row.parent_job_id, start_checkpoint_id=row.start_checkpoint_id,
        result=row.result, result_dataset_id=row.result_dataset_id,
        created_at=row.created_at, started_at=row.started_at, finished_at=row.finished_at,
    )  # fmt: skip


def epoch_out(row: EpochLogRow) -> EpochLog:
    return EpochLog(epoch=row.epoch, logs=row.logs, attempt=row.attempt, created_at=row.created_at)
