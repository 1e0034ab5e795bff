"""Running one metric here and its Keras twin over the same batches and comparing every
running value: the check each metric test module runs on its own cases."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

Batch = tuple[np.ndarray, np.ndarray, np.ndarray | None]


def assert_runs_like_keras(
    ours: Any,
    theirs: Any,
    batch: Callable[[int], Batch],
    sizes: tuple[int, ...],
    *,
    rtol: float,
    atol: float,
    zero_after_reset: bool = False,
) -> None:
    """Two rounds (the second after a reset) of batches of `sizes`, each drawn by `batch(n)` as
    (y_true, y_pred, sample_weight or None): after every batch our result is a float32 scalar
    equal to Keras's; with `zero_after_reset`, it is 0 after each reset."""
    for _ in range(2):
        for n in sizes:
            y, p, w = batch(n)
            ours.update_state(
                torch.tensor(y), torch.tensor(p), None if w is None else torch.tensor(w)
            )
            theirs.update_state(y, p, sample_weight=w)
            got, want = ours.result(), np.asarray(theirs.result())
            assert got.dtype == torch.float32 and got.shape == ()
            np.testing.assert_allclose(got.numpy(), want, rtol=rtol, atol=atol)
        ours.reset_state()
        theirs.reset_state()
        if zero_after_reset:
            np.testing.assert_array_equal(ours.result().numpy(), 0.0)
