"""Keras's activation layers: ReLU, LeakyReLU, PReLU, ELU, Softmax.

ReLU follows Keras's `ReLU.static_call` op for op (leaky_relu when only the slope is set; else
threshold, relu6 or relu, clip, then `x - slope * relu(threshold - x)`). LeakyReLU's default slope
is 0.3 (the function `leaky_relu` defaults to 0.2). PReLU is `relu(x) + (-alpha) * relu(-x)`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from app.engine.config.errors import ConfigError, DataError, Loc
from app.engine.config.readers import get_bool, get_float
from app.engine.config.registry import known_keys
from app.engine.layers.base import BASE_KEYS, LAYERS, Layer, Shape, option_weights
from app.engine.weights import initializers


@LAYERS.register("ReLU")
class ReLU(Layer):
    class_name = "ReLU"
    supports_masking = True
    config_keys = ("max_value", "negative_slope", "threshold")

    def __init__(
        self, *, name: str, max_value: float | None, negative_slope: float, threshold: float
    ) -> None:
        super().__init__(name=name)
        self.max_value = max_value
        self.negative_slope = negative_slope
        self.threshold = threshold

    @classmethod
    def from_config(cls, config: Mapping[str, Any], loc: Loc, *, name: str) -> Layer:
        known_keys(config, cls.config_keys, loc, ignored=BASE_KEYS)
        return cls(
            name=name,
            max_value=get_float(config, "max_value", loc, None, min_value=0.0),
            negative_slope=get_float(config, "negative_slope", loc, 0.0, min_value=0.0),
            threshold=get_float(config, "threshold", loc, 0.0, min_value=0.0),
        )

    def layer_config(self) -> dict[str, Any]:
        return {
            "max_value": self.max_value,
            "negative_slope": self.negative_slope,
            "threshold": self.threshold,
        }

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        slope, max_value, threshold = self.negative_slope, self.max_value, self.threshold
        negative_part: torch.Tensor | None = None
        if slope != 0.0:
            if max_value is None and threshold == 0:
                return F.leaky_relu(x, slope)
            negative_part = torch.relu(-x + threshold) if threshold != 0 else torch.relu(-x)
        clip = max_value is not None
        if threshold != 0:
            th = torch.tensor(threshold, dtype=x.dtype, device=x.device)
            x = torch.where(x > th, x, torch.zeros((), dtype=x.dtype, device=x.device))
        elif max_value == 6:
            x = F.relu6(x)
            clip = False
        else:
            x = torch.relu(x)
        if clip and max_value is not None:
            lo = torch.zeros((), dtype=x.dtype, device=x.device)
            x = torch.clip(x, lo, torch.tensor(max_value, dtype=x.dtype, device=x.device))
        if negative_part is not None:
            x = x - slope * negative_part
        return x


@LAYERS.register("LeakyReLU")
class LeakyReLU(Layer):
    class_name = "LeakyReLU"
    supports_masking = True
    config_keys = ("negative_slope", "alpha")

    def __init__(self, *, name: str, negative_slope: float) -> None:
        super().__init__(name=name)
        self.negative_slope = negative_slope

    @classmethod
    def from_config(cls, config: Mapping[str, Any], loc: Loc, *, name: str) -> Layer:
        known_keys(config, cls.config_keys, loc, ignored=BASE_KEYS)
        key = "alpha" if "alpha" in config else "negative_slope"  # Keras's deprecated spelling
        return cls(name=name, negative_slope=get_float(config, key, loc, 0.3, min_value=0.0))

    def layer_config(self) -> dict[str, Any]:
        return {"negative_slope": self.negative_slope}

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        return F.leaky_relu(x, self.negative_slope)


@LAYERS.register("PReLU")
class PReLU(Layer):
    class_name = "PReLU"
    supports_masking = True
    config_keys = ("alpha_initializer", "alpha_regularizer", "alpha_constraint", "shared_axes")
    weight_options = option_weights("alpha")
    alpha: torch.Tensor

    def __init__(
        self,
        *,
        name: str,
        alpha_initializer: Any = "zeros",
        shared_axes: list[int] | None = None,
        trainable: bool = True,
        loc: Loc = (),
    ) -> None:
        super().__init__(name=name, trainable=trainable)
        self.init_config, self.init = initializers.get(
            alpha_initializer, (*loc, "alpha_initializer")
        )
        self.shared_axes = shared_axes

    @classmethod
    def from_config(cls, config: Mapping[str, Any], loc: Loc, *, name: str) -> Layer:
        known_keys(config, cls.config_keys, loc, ignored=BASE_KEYS)
        shared = config.get("shared_axes")
        if isinstance(shared, int) and not isinstance(shared, bool):
            shared = [shared]
        if shared is not None and not (
            isinstance(shared, list | tuple)
            and all(isinstance(a, int) and not isinstance(a, bool) for a in shared)
        ):
            raise ConfigError(
                (*loc, "shared_axes"), f"must be an integer or a list of them, got {shared!r}"
            )
        return cls(
            name=name,
            alpha_initializer=config.get("alpha_initializer") or "zeros",
            shared_axes=None if shared is None else list(shared),
            trainable=get_bool(config, "trainable", loc, True),
            loc=loc,
        )

    def layer_config(self) -> dict[str, Any]:
        return {
            "alpha_initializer": self.init_config,
            "alpha_regularizer": None,
            "alpha_constraint": None,
            "shared_axes": self.shared_axes,
        }

    def build(self, input_shape: Shape, generator: torch.Generator, loc: Loc) -> Shape:
        rank = len(input_shape)
        shared = self.shared_axes or []
        for a in shared:
            if not 1 <= a < rank:
                raise ConfigError(
                    (*loc, "shared_axes"), f"axis {a} is not in 1..{rank - 1} for {input_shape}"
                )
        shape = []
        for d in range(1, rank):
            size = 1 if d in shared else input_shape[d]
            if size is None:
                raise ConfigError(
                    (*loc, "shared_axes"),
                    f"axis {d} of {input_shape} has no size; share it (list it in shared_axes)",
                )
            shape.append(size)
        self.add_weight("alpha", self.init(tuple(shape), generator))
        return input_shape

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        return torch.relu(x) + -self.alpha * torch.relu(-x)


@LAYERS.register("ELU")
class ELU(Layer):
    """Keras's ELU layer leaves `alpha` out of its own get_config, so a Keras to_json() of an ELU
    with a non-default alpha reloads with alpha 1.0 (in Keras and here alike)."""

    class_name = "ELU"
    supports_masking = True
    config_keys = ("alpha",)

    def __init__(self, *, name: str, alpha: float) -> None:
        super().__init__(name=name)
        self.alpha = alpha

    @classmethod
    def from_config(cls, config: Mapping[str, Any], loc: Loc, *, name: str) -> Layer:
        known_keys(config, cls.config_keys, loc, ignored=BASE_KEYS)
        return cls(name=name, alpha=get_float(config, "alpha", loc, 1.0))

    def layer_config(self) -> dict[str, Any]:
        return {"alpha": self.alpha}

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        return F.elu(x, self.alpha)


@LAYERS.register("Softmax")
class Softmax(Layer):
    class_name = "Softmax"
    supports_masking = True
    uses_mask = True
    config_keys = ("axis",)

    def mask_shape(self, input_shape: Any) -> Any:
        return None  # broadcast against the input from the right, checked in forward

    def __init__(self, *, name: str, axis: int | list[int]) -> None:
        super().__init__(name=name)
        self.axis = axis
        self._dims: list[int] = []

    @classmethod
    def from_config(cls, config: Mapping[str, Any], loc: Loc, *, name: str) -> Layer:
        known_keys(config, cls.config_keys, loc, ignored=BASE_KEYS)
        axis = config.get("axis", -1)
        ok_int = isinstance(axis, int) and not isinstance(axis, bool)
        if not ok_int and not (
            isinstance(axis, list | tuple)
            and axis
            and all(isinstance(a, int) and not isinstance(a, bool) for a in axis)
        ):
            raise ConfigError((*loc, "axis"), f"must be an integer or a list of them, got {axis!r}")
        return cls(name=name, axis=axis if ok_int else list(axis))

    def layer_config(self) -> dict[str, Any]:
        return {"axis": self.axis}

    def build(self, input_shape: Shape, generator: torch.Generator, loc: Loc) -> Shape:
        rank = len(input_shape)
        given = [self.axis] if isinstance(self.axis, int) else self.axis
        for a in given:
            if not -rank <= a < rank or a % rank == 0:
                raise ConfigError(
                    (*loc, "axis"), f"axis {a} is not a feature axis of {input_shape}"
                )
        if len({a % rank for a in given}) != len(given):
            raise ConfigError((*loc, "axis"), f"names an axis twice: {given}")
        self._dims = given
        return input_shape

    def forward(
        self, x: torch.Tensor, training: bool = False, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        if mask is not None:
            # Keras's rule: masked positions get -1e9 before the softmax and 0 after it; the
            # mask must broadcast against the input from the right.
            dims = zip(reversed(mask.shape), reversed(x.shape), strict=False)
            if mask.dim() > x.dim() or any(m not in (1, i) for m, i in dims):
                raise DataError(
                    ("x",),
                    f"{self.name}: a mask of shape {tuple(mask.shape)} does not broadcast to "
                    f"inputs of shape {tuple(x.shape)} (Keras refuses it too)",
                )
            mask = mask.to(torch.bool)
            x = torch.where(mask, x, -1e9)
        if len(self._dims) == 1:
            out = F.softmax(x, dim=self._dims[0])
        else:
            out = torch.exp(x - torch.logsumexp(x, dim=self._dims, keepdim=True))
        return out if mask is None else torch.where(mask, out, 0.0)
