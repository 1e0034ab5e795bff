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

from app.engine.config.errors import ConfigError, Loc
from app.engine.config.readers import get_str
from app.engine.config.registry import Registry, known_keys, set_hyperparameters
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


class Loss:
    """A Keras loss: `call` gives per-sample values, `__call__` reduces them to a scalar."""

    default_name: ClassVar[str]
    hyperparameters: ClassVar[dict[str, Any]] = {}  # a subclass's own config keys and defaults
    # Arguments a loss takes but Keras leaves out of its config (Huber's delta, CosineSimilarity's
    # axis): kept on the instance, read from a config, never written to one.
    unsaved_hyperparameters: ClassVar[dict[str, Any]] = {}
    _also_accepted: ClassVar[tuple[str, ...]] = ()  # keys read by `_parse` but not kept

    def __init__(
        self, name: str | None = None, reduction: str = "sum_over_batch_size", **hyper: Any
    ) -> None:
        declared = {**self.hyperparameters, **self.unsaved_hyperparameters}
        set_hyperparameters(self, declared, hyper)
        self.name = name if name is not None else self.default_name
        self.reduction = reduction

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

    def get_config(self) -> dict[str, Any]:
        hyper = {key: getattr(self, key) for key in self.hyperparameters}
        return {"name": self.name, "reduction": self.reduction, **hyper}

    @classmethod
    def _parse(cls, config: Mapping[str, Any], loc: Loc) -> dict[str, Any]:
        """Constructor arguments beyond name and reduction, read from `config`."""
        return {}

    @classmethod
    def from_config(cls, config: Mapping[str, Any], loc: Loc) -> Loss:
        keys = (
            "name", "reduction", "dtype", *cls.hyperparameters, *cls.unsaved_hyperparameters,
            *cls._also_accepted,
        )  # fmt: skip
        config = known_keys(config, keys, loc)
        check_float32_dtype(config, loc)
        name = get_str(config, "name", loc, cls.default_name)
        if config.get("reduction", "") in (None, "none"):
            raise ConfigError(
                (*loc, "reduction"), "reduction 'none' is not supported: training needs a scalar"
            )
        reduction = get_str(config, "reduction", loc, REDUCTIONS[0], choices=REDUCTIONS)
        return cls(name=name, reduction=reduction, **cls._parse(config, loc))


LOSSES: Registry[Loss] = Registry("loss")
