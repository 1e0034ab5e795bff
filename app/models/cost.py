"""What one request may cost: the engine's per-sample estimate (app.engine.models.cost) times the
rows a request sends, held against SYNC_MAX_COST for work done in the API process, and against
JOB_MAX_BATCH_COST and JOB_MAX_STEPS for a job; and the deadline of the synchronous loops
(SYNC_DEADLINE_S).

Past SYNC_MAX_COST, predict and evaluate run as a job (inference_jobs decides); the routes
without a job form are refused with a 413 (`cost_too_high`) that names the limit, the estimate
and the job route to use instead. A synchronous loop past its deadline stops between batches
with a 422 (`deadline_exceeded`): not a 408, which says the client was too slow to send its
request (and which clients retry on their own), nor a 5xx, since the server is fine; like the
other 422s, it says this request cannot be answered as given, and how to ask instead.
"""

from __future__ import annotations

import math
import time
import weakref
from typing import Any, Literal

import numpy as np

from app.core.config import Settings
from app.core.errors import AppError, InvalidInput, PayloadTooLarge
from app.engine.callbacks import Callback, Logs
from app.engine.models.cost import SampleCost, sample_cost
from app.engine.models.model import Model
from app.engine.training.fit_args import DEFAULT_BATCH_SIZE, FitPlan

Purpose = Literal["predict", "score", "train", "check"]

# An output element answered as JSON costs its float32, a Python float in a list and its text:
# about 45 bytes each through predict_on_batch, measured, so twelve elements' worth.
ANSWER = 12
# Scoring (evaluate, test_on_batch) also holds the labels and the loss's elementwise terms
# beside each output element.
SCORE = 2
# Training holds a gradient beside each activation of the forward pass.
TRAIN = 2
JOB_FORMS: dict[str, str] = {
    "predict_on_batch": "POST /v1/models/{id}/predict, which runs as a job (202) past the limit",
    "test_on_batch": "POST /v1/models/{id}/evaluate, which runs as a job (202) past the limit",
    "train_on_batch": "POST /v1/models/{id}/fit, which trains in a job",
    "adapt": 'POST /v1/models/{id}/fit with "adapt": true, which adapts in the job',
}


class CostTooHigh(PayloadTooLarge):
    """A request whose estimated cost is past what the API process may spend on one."""

    error_type = "cost_too_high"


class DeadlineExceeded(AppError):
    status_code = 422
    error_type = "deadline_exceeded"


def rows_of(value: Any) -> int:
    """The number of rows of x (of its first input, for several): 0 when it cannot tell (the
    engine then says what is wrong)."""
    if isinstance(value, dict):
        value = next(iter(value.values()), None)
    elif isinstance(value, list) and value and isinstance(value[0], np.ndarray):
        value = value[0]
    if isinstance(value, np.ndarray):
        return int(value.shape[0]) if value.ndim else 0
    return len(value) if isinstance(value, list) else 0


def _row_elements(value: Any) -> int | None:
    """Elements of the first row of one input (nested lists are walked down their first
    items, never converted); None when it cannot tell."""
    if isinstance(value, np.ndarray):
        return math.prod(value.shape[1:]) if value.ndim else None
    if not isinstance(value, list) or not value:
        return None
    count, row = 1, value[0]
    while isinstance(row, list):
        count, row = count * len(row), row[0] if row else None
    return count


def sent_elements(model: Model, x: Any) -> list[int | None]:
    """Per model input, the elements of one sample as the request sends them."""
    names = model.input_names
    if isinstance(x, dict):
        values = [x.get(name) for name in names]
    elif isinstance(x, list) and (len(names) > 1 or (x and isinstance(x[0], np.ndarray))):
        values = list(x)
    else:
        values = [x]
    return [_row_elements(v) for v in values]


_sample_costs: weakref.WeakKeyDictionary[Model, SampleCost] = weakref.WeakKeyDictionary()


def request_cost(model: Model, x: Any, *, rows: int, purpose: Purpose) -> int:
    """Estimated elements of running `model` on `rows` rows of `x`: the per-sample estimate at
    the sizes `x` has, plus, by purpose, the answer (predict), the labels and loss terms
    (score), and the backward pass (train); `check` is the forward pass alone."""
    cost = _sample_costs.get(model)
    if cost is None:  # a model's graph never changes: its estimate is made once
        cost = _sample_costs[model] = sample_cost(model)
    scale = cost.scaled(sent_elements(model, x))
    per_sample = cost.elements(scale)
    outputs = math.ceil(cost.outputs * scale)
    if purpose == "predict":
        per_sample += ANSWER * outputs
    elif purpose in ("score", "train"):
        per_sample += SCORE * outputs
    if purpose == "train":
        per_sample *= TRAIN
    return max(rows, 1) * per_sample


def over_sync_cost(settings: Settings, model: Model, x: Any, *, purpose: Purpose) -> bool:
    return request_cost(model, x, rows=rows_of(x), purpose=purpose) > settings.sync_max_cost


def check_sync_cost(
    settings: Settings, model: Model, x: Any, *, route: str, purpose: Purpose
) -> None:
    """A 413 naming the limit, the estimate and the job route, when running `route` on all of
    `x` in this process would cost more than SYNC_MAX_COST."""
    rows = rows_of(x)
    cost = request_cost(model, x, rows=rows, purpose=purpose)
    if cost > settings.sync_max_cost:
        raise CostTooHigh(
            f"{route} on {rows} rows is estimated at {cost} tensor elements (rows x this "
            f"model's activations and outputs per sample), past SYNC_MAX_COST "
            f"({settings.sync_max_cost}) for work done within a request; use "
            f"{JOB_FORMS[route]}, or send fewer rows",
            loc=["body", "x"],
        )


def check_one_sample(
    settings: Settings, model: Model, x: Any = None, *, loc: list[str | int]
) -> None:
    """A 413 when even one sample (of `x`, if given) costs more than SYNC_MAX_COST: checking a
    fit or an evaluation (and compile, which exists for them) runs the model on one sample in
    the API process."""
    cost = request_cost(model, x, rows=1, purpose="check")
    if cost > settings.sync_max_cost:
        raise CostTooHigh(
            f"one sample of this model is estimated at {cost} tensor elements, past "
            f"SYNC_MAX_COST ({settings.sync_max_cost}); the API process checks a fit or an "
            "evaluation on one sample, so this model can only predict (as a job, POST "
            "/v1/models/{id}/predict) unless the operator raises SYNC_MAX_COST",
            loc=loc,
        )


def check_job_batch(
    settings: Settings,
    model: Model,
    x: Any,
    *,
    batch_size: int,
    purpose: Purpose,
    loc: list[str | int],
) -> None:
    """A 422 at `loc` (a batch size) when one batch of a job would cost more than
    JOB_MAX_BATCH_COST, saying how many samples a batch may hold."""
    per_sample = request_cost(model, x, rows=1, purpose=purpose)
    cost, limit = batch_size * per_sample, settings.job_max_batch_cost
    if cost > limit:
        most = limit // per_sample
        allowed = (f"at most {most} samples a batch fit" if most else
                   "not even one sample fits; the model is too large for the workers")  # fmt: skip
        raise InvalidInput(
            f"a batch of {batch_size} samples is estimated at {cost} tensor elements, past "
            f"JOB_MAX_BATCH_COST ({limit}): {allowed}",
            loc=loc,
        )


def check_job_steps(
    settings: Settings, *, epochs: int, initial_epoch: int, steps: int, loc: list[str | int]
) -> None:
    """A 422 at `loc` (epochs) when a fit would run more than JOB_MAX_EPOCHS epochs or
    JOB_MAX_STEPS batches."""
    if epochs - initial_epoch > settings.job_max_epochs:
        raise InvalidInput(
            f"{epochs - initial_epoch} epochs are past JOB_MAX_EPOCHS ({settings.job_max_epochs})",
            loc=loc,
        )
    total = (epochs - initial_epoch) * steps
    if total > settings.job_max_steps:
        most = initial_epoch + settings.job_max_steps // max(steps, 1)
        raise InvalidInput(
            f"{epochs - initial_epoch} epochs of {steps} steps are {total} steps, past "
            f"JOB_MAX_STEPS ({settings.job_max_steps}); with {steps} steps an epoch, epochs "
            f"may be at most {most}",
            loc=loc,
        )


def check_fit_plan(settings: Settings, model: Model, x: Any, plan: FitPlan) -> None:
    """A checked fit's batches within JOB_MAX_BATCH_COST (training, and validation when there
    is some) and its steps within JOB_MAX_STEPS; 422s naming the argument to change."""
    args = plan.args
    batch_size = args.batch_size or DEFAULT_BATCH_SIZE
    check_job_batch(settings, model, x, batch_size=batch_size, purpose="train",
                    loc=["body", "batch_size"])  # fmt: skip
    if plan.validation is not None:
        key = "validation_batch_size" if args.validation_batch_size else "batch_size"
        check_job_batch(settings, model, x, batch_size=args.validation_batch_size or batch_size,
                        purpose="score", loc=["body", key])  # fmt: skip
    steps = args.steps_per_epoch or math.ceil(plan.train.size / batch_size)
    check_job_steps(settings, epochs=args.epochs, initial_epoch=args.initial_epoch, steps=steps,
                    loc=["body", "epochs"])  # fmt: skip


class Deadline(Callback):
    """SYNC_DEADLINE_S from its creation; `stop_if_past` between batches (also as evaluate's
    callback) stops a synchronous loop past it."""

    def __init__(self, settings: Settings, route: str) -> None:
        self.seconds = settings.sync_deadline_s
        self.route = route
        self.rows = settings.predict_sync_max_rows
        self.end = time.monotonic() + self.seconds

    def stop_if_past(self) -> None:
        if time.monotonic() > self.end:
            raise DeadlineExceeded(
                f"{self.route} ran past SYNC_DEADLINE_S ({self.seconds:g} s) and was stopped; "
                f"send fewer rows, or more than PREDICT_SYNC_MAX_ROWS ({self.rows}), which "
                f"POST /v1/models/{{id}}/{self.route} runs as a job (202)",
                loc=["body", "x"],
            )

    def on_test_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        self.stop_if_past()
