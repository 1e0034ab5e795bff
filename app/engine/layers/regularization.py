"""ActivityRegularization: the identity, adding an L1/L2 penalty on its input to the loss.

The penalty is the base Layer's activity regularization (an `L1L2(l1, l2)`, divided by the batch
size), so it is computed and summed exactly as any layer's `activity_regularizer`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from app.engine.config.errors import ConfigError, Loc
from app.engine.layers import keys
from app.engine.layers.base import LAYERS, Layer
from app.engine.weights import regularizers


@LAYERS.add()
class ActivityRegularization(Layer):
    supports_masking = True
    # Written back as given (null too), as Keras does; null penalizes nothing.
    l1 = keys.number_or_none(0.0, min_value=0.0)
    l2 = keys.number_or_none(0.0, min_value=0.0)

    def __post_init__(self) -> None:
        penalty = regularizers.L1L2((), l1=self.l1 or 0.0, l2=self.l2 or 0.0)
        self.set_activity_regularizer(penalty, ())

    @classmethod
    def from_config(cls, config: Mapping[str, Any], loc: Loc, *, name: str) -> Layer:
        if config.get("activity_regularizer") is not None:
            raise ConfigError(
                (*loc, "activity_regularizer"),
                "ActivityRegularization makes its own from l1 and l2; leave it null",
            )
        return super().from_config(config, loc, name=name)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.pop("activity_regularizer", None)  # Keras leaves it out: l1 and l2 say it
        return config

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        return x
