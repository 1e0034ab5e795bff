"""The Loss base class and the LOSSES registry, kept apart from the loss classes so that every
loss module (`crossentropy`, `regression`, `probabilistic`, ...) can import them without an
import cycle. `app.engine.losses` re-exports these names and imports every loss
module, so importing it fills the registry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch

from app.engine.config.declared import Declared, Derived, Key, string
from app.engine.config.errors import ConfigError, Loc
from app.engine.config.readers import get_str
from app.engine.config.registry import Registry
from app.engine.losses.reduction import (
    Shape,
    apply_mask,
    check_float32_dtype,
    check_same_shape,
    numeric_labels,
    reduce_weighted_values,
    squeeze_or_expand_to_same_rank,
)

Tensor = torch.Tensor

EPSILON = 1e-7  # keras.backend.epsilon()
REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight")


def _read_reduction(config: Mapping[str, Any], key: str, loc: Loc, default: str) -> str:
    if config.get(key, "") in (None, "none"):
        raise ConfigError((*loc, key), "reduction 'none' is not supported: training needs a scalar")
    reduction: str = get_str(config, key, loc, default, choices=REDUCTIONS)
    return reduction


def _read_dtype(config: Mapping[str, Any], key: str, loc: Loc, default: None) -> None:
    check_float32_dtype(config, loc)


class Loss(Declared):
    """A Keras loss: `call` gives per-sample values, `__call__` reduces them to a scalar. Its
    config is `name`, `reduction` and the keys a subclass declares (`saved=False` for those
    Keras accepts but leaves out of its config)."""

    default_name: ClassVar[str]
    name = string(Derived(lambda cls: cls.default_name))
    reduction = Key[str](_read_reduction, REDUCTIONS[0])
    # Accepted when it says float32; never written back.
    dtype = Key[None](_read_dtype, None, saved=False)

    def fn(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        raise NotImplementedError

    def call(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        y_true, y_pred = squeeze_or_expand_to_same_rank(y_true, y_pred)
        return self.fn(y_true, y_pred)

    def __call__(
        self,
        y_true: Tensor,
        y_pred: Tensor,
        sample_weight: Tensor | None = None,
        mask: Tensor | None = None,
    ) -> Tensor:
        """The reduced loss; `mask` is the Keras mask of `y_pred` (from Embedding(mask_zero) or
        Masking through the model), under which only unmasked entries count."""
        values = self.call(y_true.to(torch.float32), y_pred.to(torch.float32))
        if mask is not None:
            sample_weight = apply_mask(sample_weight, mask, self.reduction, values)
        return reduce_weighted_values(values, sample_weight, self.reduction)

    def check_labels(self, y_true: np.ndarray, y_pred_shape: Shape, loc: Loc) -> None:
        """DataError if `y_true` cannot be scored against outputs of `y_pred_shape` (the full
        output shape; its batch dimension is ignored)."""
        y = numeric_labels(np.asarray(y_true), loc)
        # The output's batch dimension is whatever the model reports (often None).
        out = tuple(y_pred_shape)
        self._check(y, (y.shape[0], *out[1:]) if y.ndim and out else out, loc)

    def _check(self, y: np.ndarray, out_shape: Shape, loc: Loc) -> None:
        check_same_shape(y.shape, out_shape, loc)


LOSSES: Registry[Loss] = Registry("loss")
