"""Keras's `train_on_batch`, `test_on_batch` and `predict_on_batch`: one step on the arrays
given, taken whole as one batch.

As in Keras, each call resets the loss tracker and the metrics first, so the logs describe this
batch alone (`reset_metrics=True`), under the names fit logs them (`return_dict=True`). A train
step's loss and metrics come from its forward pass, before the update. The optimizer is the
trainer's: repeated calls continue its state (step count, moments), as repeated calls on one
compiled Keras model do, and a call after a fit continues from where the fit left it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from app.engine.arrays.checks import Arrays, input_tensors
from app.engine.callbacks import CallbackList
from app.engine.config.errors import DataError, Loc
from app.engine.models.model import Model
from app.engine.training import precision
from app.engine.training.fit_args import MAX_BATCH_SIZE, apply_class_weight
from app.engine.training.inference import model_device, model_inputs
from app.engine.training.loop import run_test

if TYPE_CHECKING:
    from app.engine.training.trainer import Trainer


def _check_size(size: int, loc: Loc) -> None:
    if size > MAX_BATCH_SIZE:
        raise DataError(loc, f"holds {size} samples; one batch holds at most {MAX_BATCH_SIZE}")


def _batch(
    trainer: Trainer, x: Any, y: Any, sample_weight: Any, class_weight: Any, loc: Loc
) -> Arrays:
    data = trainer.prepare(x, y, sample_weight, loc)
    _check_size(data.size, (*loc, "x"))
    if class_weight is not None:
        data = apply_class_weight(data, class_weight, loc)
    return Arrays.from_numpy(data, trainer.device, trainer.model.input_dtypes)


def train_on_batch(
    trainer: Trainer,
    x: Any,
    y: Any,
    *,
    sample_weight: Any = None,
    class_weight: Any = None,
    loc: Loc = (),
) -> dict[str, float]:
    """One optimizer step on the whole of (x, y); the batch's loss and metrics."""
    batch = _batch(trainer, x, y, sample_weight, class_weight, loc)
    if trainer.seed is None and not trainer.rng_restored:
        trainer.seed_generator(None)  # as fit seeds it; a restored state continues its own
    trainer.reset_metrics()
    trainer.model.set_generator(trainer.generator)
    try:
        trainer.train_step(batch)
    finally:
        trainer.model.set_generator(None)
    return trainer.get_metrics_result()


def test_on_batch(
    trainer: Trainer, x: Any, y: Any, *, sample_weight: Any = None, loc: Loc = ()
) -> dict[str, float]:
    """Loss and metrics of (x, y) in inference mode, as one batch: evaluate's own code path."""
    data = trainer.prepare(x, y, sample_weight, loc)
    _check_size(data.size, (*loc, "x"))
    arrays = trainer.to_device(data)
    return run_test(trainer, arrays, arrays.size, CallbackList([]))


def predict_on_batch(
    model: Model,
    x: Any,
    *,
    device: torch.device | None = None,
    dtype_policy: str = "float32",
    loc: Loc = (),
) -> np.ndarray | list[np.ndarray]:
    """One forward pass in inference mode (under `dtype_policy`, as predict): one array for a
    one-output model, else one per output in output order."""
    device = device or model_device(model)
    xs = model_inputs(model, x, loc)
    _check_size(int(xs[0].shape[0]), (*loc, "x"))
    with torch.no_grad(), precision.compute(dtype_policy, device):
        ts = input_tensors(xs, model.input_dtypes, device)
        out = model(ts[0] if len(ts) == 1 else ts, training=False)
    outs = [o.float().cpu().numpy() for o in (out if isinstance(out, list) else [out])]
    return outs[0] if len(outs) == 1 else outs
