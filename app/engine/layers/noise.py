"""Keras's training-only noise layers: GaussianNoise, GaussianDropout, AlphaDropout,
SpatialDropout1D/2D/3D.

Each is the identity outside training. In training its randomness comes from `self.generator`,
which the model sets to the trainer's seeded generator (as for Dropout), so a seeded fit is
reproducible; the draws follow Keras's distributions, not its random streams.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

from app.engine.config.errors import ConfigError, Loc
from app.engine.config.readers import get_float
from app.engine.layers import keys
from app.engine.layers.base import LAYERS, Layer, Shape


def _fraction(*, inclusive: bool = False) -> keys.Key[float]:
    """A number in [0, 1) (in [0, 1] when `inclusive`)."""

    def read(config: Mapping[str, Any], key: str, loc: Loc) -> float:
        value: float = get_float(config, key, loc, min_value=0.0)
        if value > 1.0 or (value == 1.0 and not inclusive):
            op = "<=" if inclusive else "<"
            raise ConfigError((*loc, key), f"must be {op} 1.0, got {value}")
        return value

    return keys.Key(read)


def _read_noise_shape(
    config: Mapping[str, Any], key: str, loc: Loc, default: Any = None
) -> list[int | None] | None:
    shape = config.get(key)
    if shape is None:
        return None
    if not (
        isinstance(shape, list | tuple)
        and all(d is None or (isinstance(d, int) and not isinstance(d, bool)) for d in shape)
    ):
        raise ConfigError(
            (*loc, key), f"must be null or a list of integers or nulls, got {shape!r}"
        )
    return list(shape)


class _Random(Layer):
    """A layer drawing from the trainer's generator in training."""

    supports_masking = True

    def __post_init__(self) -> None:
        self.generator: torch.Generator | None = None


@LAYERS.add()
class GaussianNoise(_Random):
    """Adds N(0, stddev²) noise in training; Keras allows stddev in [0, 1]."""

    stddev = _fraction(inclusive=True)
    seed = keys.integer_or_none()

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        if not training or self.stddev == 0.0:
            return x
        return x + torch.empty_like(x).normal_(0.0, self.stddev, generator=self.generator)


class _Rate(_Random):
    """A layer with a rate in [0, 1) and a seed."""

    rate = _fraction()
    seed = keys.integer_or_none()


@LAYERS.add()
class GaussianDropout(_Rate):
    """Multiplies by N(1, rate / (1 - rate)) noise in training."""

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        if not training or self.rate == 0.0:
            return x
        stddev = math.sqrt(self.rate / (1.0 - self.rate))
        return x * torch.empty_like(x).normal_(1.0, stddev, generator=self.generator)


class _SpatialDropout(_Rate):
    """Drops whole channels: one keep/drop draw per sample and channel, kept values scaled by
    1 / (1 - rate). Keras's config for these layers has no `trainable` key."""

    rank = 3
    data_format = "channels_last"  # SpatialDropout1D's; the others declare the key

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
        if not training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = torch.empty(self.noise_shape(x), dtype=x.dtype, device=x.device)
        mask = mask.bernoulli_(keep, generator=self.generator).bool()
        return torch.where(mask, x / keep, torch.zeros((), dtype=x.dtype, device=x.device))


@LAYERS.add()
class SpatialDropout1D(_SpatialDropout):
    pass


class _FormattedSpatialDropout(_SpatialDropout):
    """SpatialDropout2D/3D: the channel axis follows `data_format`."""

    data_format = keys.data_format()


@LAYERS.add()
class SpatialDropout2D(_FormattedSpatialDropout):
    rank = 4


@LAYERS.add()
class SpatialDropout3D(_FormattedSpatialDropout):
    rank = 5


# SELU's constants, as Keras's AlphaDropout writes them.
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


@LAYERS.add()
class AlphaDropout(_Rate):
    """Dropout that keeps SELU's self-normalization: dropped units are set to SELU's negative
    saturation value `-alpha * scale`, then the result is moved back to the input's mean and
    variance with Keras's affine `a * x + b`. A unit is kept when a uniform draw is >= rate.
    `noise_shape` (null entries are the input's size) lets the draw broadcast, as in Keras."""

    noise_shape = keys.Key[list[int | None] | None](_read_noise_shape, None)

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
        if not training or self.rate == 0.0:
            return x
        rate = self.rate
        shape = tuple(
            x.shape[d] if n is None else n for d, n in enumerate(self.noise_shape or x.shape)
        )
        draw = torch.empty(shape, dtype=x.dtype, device=x.device).uniform_(generator=self.generator)
        kept = (draw >= rate).to(x.dtype)
        saturated = -_SELU_ALPHA * _SELU_SCALE
        a = ((1 - rate) * (1 + rate * saturated**2)) ** -0.5
        b = -a * saturated * rate
        return a * (x * kept + saturated * (1 - kept)) + b
