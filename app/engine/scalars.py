"""Cached 0-d tensors for the constants Keras keeps as float32 device tensors: a loss's divisor, a
metric's sample weight or threshold, an optimizer's learning rate, betas and clipping limits.

Each is made once per (value, dtype, device) with `torch.full` (a fill kernel, never a host
copy, so no sync with the GPU) and then shared by every caller; the division or multiplication
it takes part in rounds exactly as with a fresh tensor. Shared means read-only: never modify one
in place. Values that change every step (an optimizer's step count) should not come from here.
"""

from __future__ import annotations

import functools
import math

import torch

Tensor = torch.Tensor


def scalar(value: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A shared 0-d tensor holding `value` (0.0 and -0.0 are kept apart)."""
    return _cached(value, math.copysign(1.0, value), dtype, device)


def scalar_like(value: float, like: Tensor) -> Tensor:
    """`scalar` with the dtype and device of `like`."""
    return _cached(value, math.copysign(1.0, value), like.dtype, like.device)


@functools.lru_cache(maxsize=256)
def _cached(value: float, sign: float, dtype: torch.dtype, device: torch.device) -> Tensor:
    # Made outside inference mode: a constant first needed by predict may later be saved for
    # a training step's backward pass, which an inference tensor cannot be.
    with torch.inference_mode(False):
        return torch.full((), value, dtype=dtype, device=device)
