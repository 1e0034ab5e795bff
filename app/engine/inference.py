"""Device choice and Keras's `predict`: inference mode, batches concatenated along axis 0."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from app.engine.data import check_input_shape, to_array
from app.engine.errors import DataError, Loc
from app.engine.fit_args import DEFAULT_BATCH_SIZE, MAX_BATCH_SIZE
from app.engine.models import Sequential


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


def predict(
    model: Sequential,
    x: Any,
    *,
    batch_size: int | None = None,
    device: torch.device | None = None,
    loc: Loc = (),
) -> np.ndarray:
    device = device or next(
        (t.device for t in model.weight_tensors().values()), torch.device("cpu")
    )
    xa = to_array(x, (*loc, "x"))
    check_input_shape(xa, model.input_shape, (*loc, "x"))
    model.check_input(xa, (*loc, "x"))
    bs = batch_size or DEFAULT_BATCH_SIZE
    if not 1 <= bs <= MAX_BATCH_SIZE:
        raise DataError((*loc, "batch_size"), f"must be in [1, {MAX_BATCH_SIZE}]")
    xt = torch.as_tensor(xa, device=device)
    outs = []
    with torch.no_grad():
        for lo in range(0, xt.shape[0], bs):
            outs.append(model(xt[lo : lo + bs], training=False))
    return torch.cat(outs).cpu().numpy()
