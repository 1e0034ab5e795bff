"""Keras's training-only noise layers: GaussianNoise, GaussianDropout, AlphaDropout,
SpatialDropout1D/2D/3D.

Each is the identity outside training. In training its randomness comes from `self.generator`,
which the model sets to the trainer's seeded generator (as for Dropout), so a seeded fit is
reproducible; the draws follow Keras's distributions, not its random streams.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from app.engine.config.errors import ConfigError, Loc
from app.engine.config.readers import get_float, get_int, get_str
from app.engine.config.registry import known_keys
from app.engine.layers.base import BASE_KEYS, LAYERS, Layer, Shape


class _Random(Layer):
    """A layer with one probability-like parameter (`key`) in [0, `upper`) and a seed."""

    key = "rate"
    upper = 1.0
    upper_inclusive = False

    def __init__(self, *, name: str, value: float, seed: int | None) -> None:
        super().__init__(name=name)
        self.value = value
        self.seed = seed
        self.generator: torch.Generator | None = None

    @classmethod
    def read_value(cls, config: Mapping[str, Any], loc: Loc) -> float:
        value: float = get_float(config, cls.key, loc, min_value=0.0)
        if value > cls.upper or (value == cls.upper and not cls.upper_inclusive):
            op = "<=" if cls.upper_inclusive else "<"
            raise ConfigError((*loc, cls.key), f"must be {op} {cls.upper}, got {value}")
        return value

    @classmethod
    def from_config(cls, config: Mapping[str, Any], loc: Loc, *, name: str) -> Layer:
        known_keys(config, cls.config_keys, loc, ignored=BASE_KEYS)
        return cls(
            name=name, value=cls.read_value(config, loc), seed=get_int(config, "seed", loc, None)
        )

    def layer_config(self) -> dict[str, Any]:
        return {self.key: self.value, "seed": self.seed}


@LAYERS.register("GaussianNoise")
class GaussianNoise(_Random):
    """Adds N(0, stddev²) noise in training; Keras allows stddev in [0, 1]."""

    class_name = "GaussianNoise"
    supports_masking = True
    config_keys = ("stddev", "seed")
    key = "stddev"
    upper_inclusive = True

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        if not training or self.value == 0.0:
            return x
        return x + torch.empty_like(x).normal_(0.0, self.value, generator=self.generator)


@LAYERS.register("GaussianDropout")
class GaussianDropout(_Random):
    """Multiplies by N(1, rate / (1 - rate)) noise in training."""

    class_name = "GaussianDropout"
    supports_masking = True
    config_keys = ("rate", "seed")

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        if not training or self.value == 0.0:
            return x
        stddev = math.sqrt(self.value / (1.0 - self.value))
        return x * torch.empty_like(x).normal_(1.0, stddev, generator=self.generator)


class _SpatialDropout(_Random):
    """Drops whole channels: one keep/drop draw per sample and channel, kept values scaled by
    1 / (1 - rate). Keras's config for these layers has no `trainable` key."""

    rank = 3
    config_keys: ClassVar[tuple[str, ...]] = ("rate", "seed")

    def __init__(
        self, *, name: str, value: float, seed: int | None, data_format: str = "channels_last"
    ) -> None:
        super().__init__(name=name, value=value, seed=seed)
        self.data_format = data_format

    def base_config(self) -> dict[str, Any]:
        # Keras's SpatialDropout constructors take no `trainable`, so it is left out.
        return {"name": self.name, "dtype": "float32"}

    def build(self, input_shape: Shape, generator: torch.Generator, loc: Loc) -> Shape:
        if len(input_shape) != self.rank:
            raise ConfigError(
                loc, f"{self.class_name} needs inputs of rank {self.rank}, got {input_shape}"
            )
        return input_shape

    def noise_shape(self, x: torch.Tensor) -> tuple[int, ...]:
        channel = 1 if self.data_format == "channels_first" else x.dim() - 1
        return tuple(n if d in (0, channel) else 1 for d, n in enumerate(x.shape))

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        if not training or self.value == 0.0:
            return x
        keep = 1.0 - self.value
        mask = torch.empty(self.noise_shape(x), dtype=x.dtype, device=x.device)
        mask = mask.bernoulli_(keep, generator=self.generator).bool()
        return torch.where(mask, x / keep, torch.zeros((), dtype=x.dtype, device=x.device))


@LAYERS.register("SpatialDropout1D")
class SpatialDropout1D(_SpatialDropout):
    class_name = "SpatialDropout1D"
    supports_masking = True


class _FormattedSpatialDropout(_SpatialDropout):
    """SpatialDropout2D/3D: the channel axis follows `data_format`."""

    config_keys = ("rate", "seed", "data_format")

    @classmethod
    def from_config(cls, config: Mapping[str, Any], loc: Loc, *, name: str) -> Layer:
        known_keys(config, cls.config_keys, loc, ignored=BASE_KEYS)
        fmt = get_str(config, "data_format", loc, None, choices=["channels_last", "channels_first"])
        return cls(
            name=name,
            value=cls.read_value(config, loc),
            seed=get_int(config, "seed", loc, None),
            data_format=fmt or "channels_last",
        )

    def layer_config(self) -> dict[str, Any]:
        return {**super().layer_config(), "data_format": self.data_format}


@LAYERS.register("SpatialDropout2D")
class SpatialDropout2D(_FormattedSpatialDropout):
    class_name = "SpatialDropout2D"
    supports_masking = True
    rank = 4


@LAYERS.register("SpatialDropout3D")
class SpatialDropout3D(_FormattedSpatialDropout):
    class_name = "SpatialDropout3D"
    supports_masking = True
    rank = 5


# SELU's constants, as Keras's AlphaDropout writes them.
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


@LAYERS.register("AlphaDropout")
class AlphaDropout(_Random):
    """Dropout that keeps SELU's self-normalization: dropped units are set to SELU's negative
    saturation value `-alpha * scale`, then the result is moved back to the input's mean and
    variance with Keras's affine `a * x + b`. A unit is kept when a uniform draw is >= rate.
    `noise_shape` (null entries are the input's size) lets the draw broadcast, as in Keras."""

    class_name = "AlphaDropout"
    supports_masking = True
    config_keys = ("rate", "noise_shape", "seed")

    def __init__(
        self, *, name: str, value: float, seed: int | None, noise_shape: list[int | None] | None
    ) -> None:
        super().__init__(name=name, value=value, seed=seed)
        self.noise_shape = noise_shape

    @classmethod
    def from_config(cls, config: Mapping[str, Any], loc: Loc, *, name: str) -> Layer:
        known_keys(config, cls.config_keys, loc, ignored=BASE_KEYS)
        shape = config.get("noise_shape")
        if shape is not None and not (
            isinstance(shape, list | tuple)
            and all(d is None or (isinstance(d, int) and not isinstance(d, bool)) for d in shape)
        ):
            raise ConfigError(
                (*loc, "noise_shape"), f"must be null or a list of integers or nulls, got {shape!r}"
            )
        return cls(
            name=name,
            value=cls.read_value(config, loc),
            seed=get_int(config, "seed", loc, None),
            noise_shape=None if shape is None else list(shape),
        )

    def layer_config(self) -> dict[str, Any]:
        return {**super().layer_config(), "noise_shape": self.noise_shape}

    def build(self, input_shape: Shape, generator: torch.Generator, loc: Loc) -> Shape:
        if self.noise_shape is not None:
            if len(self.noise_shape) != len(input_shape):
                raise ConfigError(
                    (*loc, "noise_shape"),
                    f"must have one entry per input dimension ({len(input_shape)}), "
                    f"got {self.noise_shape}",
                )
            for d, (n, size) in enumerate(zip(self.noise_shape, input_shape, strict=True)):
                if n not in (None, 1, size):
                    raise ConfigError(
                        (*loc, "noise_shape", d),
                        f"must be null, 1 or the input's size {size}, got {n}",
                    )
        return input_shape

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        if not training or self.value == 0.0:
            return x
        rate = self.value
        shape = tuple(
            x.shape[d] if n is None else n for d, n in enumerate(self.noise_shape or x.shape)
        )
        draw = torch.empty(shape, dtype=x.dtype, device=x.device).uniform_(generator=self.generator)
        kept = (draw >= rate).to(x.dtype)
        saturated = -_SELU_ALPHA * _SELU_SCALE
        a = ((1 - rate) * (1 + rate * saturated**2)) ** -0.5
        b = -a * saturated * rate
        return a * (x * kept + saturated * (1 - kept)) + b
