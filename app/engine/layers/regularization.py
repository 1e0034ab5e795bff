"""ActivityRegularization: the identity, adding an L1/L2 penalty on its input to the loss.

The penalty is the base Layer's activity regularization (an `L1L2(l1, l2)`, divided by the batch
size), so it is computed and summed exactly as any layer's `activity_regularizer`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from app.engine.config.errors import ConfigError, Loc
from app.engine.config.readers import get_bool, get_float
from app.engine.config.registry import known_keys
from app.engine.layers.base import BASE_KEYS, LAYERS, Layer
from app.engine.weights import regularizers


@LAYERS.register("ActivityRegularization")
class ActivityRegularization(Layer):
    class_name = "ActivityRegularization"
    supports_masking = True
    config_keys = ("l1", "l2")

    def __init__(
        self, *, name: str, l1: float | None, l2: float | None, trainable: bool, loc: Loc
    ) -> None:
        super().__init__(name=name, trainable=trainable)
        # Written back as given (null too), as Keras does; null penalizes nothing.
        self.l1 = l1
        self.l2 = l2
        penalty = regularizers.L1L2(loc, l1=l1 or 0.0, l2=l2 or 0.0)
        self.set_activity_regularizer(penalty, loc)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], loc: Loc, *, name: str) -> Layer:
        known_keys(config, cls.config_keys, loc, ignored=BASE_KEYS)
        if config.get("activity_regularizer") is not None:
            raise ConfigError(
                (*loc, "activity_regularizer"),
                "ActivityRegularization makes its own from l1 and l2; leave it null",
            )
        return cls(
            name=name,
            l1=get_float(config, "l1", loc, 0.0, min_value=0.0, allow_none=True),
            l2=get_float(config, "l2", loc, 0.0, min_value=0.0, allow_none=True),
            trainable=get_bool(config, "trainable", loc, True),
            loc=loc,
        )

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.pop("activity_regularizer", None)  # Keras leaves it out: l1 and l2 say it
        return config

    def layer_config(self) -> dict[str, Any]:
        return {"l1": self.l1, "l2": self.l2}

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        return x
