"""Device choice and Keras's `predict`: inference mode, batches concatenated along axis 0."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np
import torch

from app.engine.arrays.checks import (
    XY,
    Arrays,
    BatchSource,
    check_same_length,
    input_tensors,
    read_inputs,
)
from app.engine.arrays.host_batches import HostBatches, is_mapped
from app.engine.config.errors import DataError, Loc
from app.engine.models.model import Model
from app.engine.training import precision
from app.engine.training.fit_args import DEFAULT_BATCH_SIZE, MAX_BATCH_SIZE


def resolve_device(name: str = "auto") -> torch.device:
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name
    )
    if device.type == "cuda":
        # Keras's numbers are float32: TF32 convolutions and matmuls (cuDNN's default for
        # convolutions) would differ from them by about 1e-3.
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    return device


def model_device(model: Model) -> torch.device:
    """Where the model's weights are (the CPU for a model without any)."""
    return next((t.device for t in model.weight_tensors().values()), torch.device("cpu"))


def model_inputs(model: Model, x: Any, loc: Loc) -> list[np.ndarray]:
    """`x` read as the model's inputs (one array, a list in input order or an object keyed by
    input name), checked against their shapes, all of one length; errors name `x`."""
    xs = read_inputs(x, model.input_names, model.input_shapes, (*loc, "x"), model.input_dtypes)
    model.check_input(xs, (*loc, "x"))
    if model.single_input:
        check_same_length([((*loc, "x"), a) for a in xs])
    else:
        check_same_length([((*loc, "x", n), a) for n, a in zip(model.input_names, xs, strict=True)])
    return xs


def predict(
    model: Model,
    x: Any,
    *,
    batch_size: int | None = None,
    device: torch.device | None = None,
    dtype_policy: str = "float32",
    loc: Loc = (),
) -> np.ndarray | list[np.ndarray]:
    """Keras's `predict`: one array for a one-output model, else one per output in output
    order; under a mixed `dtype_policy` the layers compute in its half type, as Keras's do, and
    the outputs come back as float32."""
    xs = model_inputs(model, x, loc)
    parts = predict_batches(
        model, xs, batch_size=batch_size, device=device, dtype_policy=dtype_policy, loc=loc
    )
    joined = [np.concatenate(col) for col in zip(*parts, strict=True)]
    return joined[0] if len(joined) == 1 else joined


def predict_batches(
    model: Model,
    xs: list[np.ndarray],
    *,
    batch_size: int | None = None,
    device: torch.device | None = None,
    dtype_policy: str = "float32",
    loc: Loc = (),
) -> Generator[list[np.ndarray], None, None]:
    """The outputs of checked inputs `xs` (as `model_inputs` returns them), one batch at a
    time, as float32 host arrays in output order. Memory-mapped inputs are read a batch at a
    time (a batch inference over a stored dataset holds a few batches, never the whole)."""
    device = device or model_device(model)
    bs = batch_size or DEFAULT_BATCH_SIZE
    if not 1 <= bs <= MAX_BATCH_SIZE:
        raise DataError((*loc, "batch_size"), f"must be in [1, {MAX_BATCH_SIZE}]")
    source: BatchSource
    if is_mapped(XY(xs, [], [])):
        source = HostBatches(XY(xs, [], []), device, model.input_dtypes)
    else:
        source = Arrays(input_tensors(xs, model.input_dtypes, device), [], [])
    try:
        with torch.no_grad(), precision.compute(dtype_policy, device):
            for lo in range(0, source.size, bs):
                part = source.take(slice(lo, lo + bs))
                out = model(part.inputs, training=False)
                yield [o.float().cpu().numpy() for o in (out if isinstance(out, list) else [out])]
    finally:
        source.close()
