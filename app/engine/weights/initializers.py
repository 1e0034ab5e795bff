"""Keras weight initializers, drawn from a seeded torch generator so a seeded model is reproducible.

Fans are computed on the Keras kernel shape (`(..., in, out)`), as Keras's `compute_fans` does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch

from app.engine.config.declared import Declared, anything, must_be_null, number, string
from app.engine.config.errors import ConfigError, Loc
from app.engine.config.registry import Registry

Init = Callable[[tuple[int, ...], torch.Generator], torch.Tensor]

# Keras's truncated-normal correction: the stddev of a unit normal truncated to [-2, 2].
_TRUNC_STD = 0.87962566103423978


def compute_fans(shape: tuple[int, ...]) -> tuple[float, float]:
    if len(shape) == 0:
        return 1.0, 1.0
    if len(shape) == 1:
        return float(shape[0]), float(shape[0])
    if len(shape) == 2:
        return float(shape[0]), float(shape[1])
    receptive = math.prod(shape[:-2])
    return float(shape[-2] * receptive), float(shape[-1] * receptive)


def _truncated_normal(
    shape: tuple[int, ...], gen: torch.Generator, mean: float, std: float
) -> torch.Tensor:
    out = torch.empty(shape, dtype=torch.float32)
    torch.nn.init.trunc_normal_(out, mean=0.0, std=1.0, a=-2.0, b=2.0, generator=gen)
    return out * std + mean


def _variance_scaling(
    shape: tuple[int, ...], gen: torch.Generator, scale: float, mode: str, distribution: str
) -> torch.Tensor:
    fan_in, fan_out = compute_fans(shape)
    fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    variance = scale / max(1.0, fan)
    if distribution == "uniform":
        limit = math.sqrt(3.0 * variance)
        return torch.empty(shape).uniform_(-limit, limit, generator=gen)
    if distribution == "untruncated_normal":
        return torch.empty(shape).normal_(0.0, math.sqrt(variance), generator=gen)
    return _truncated_normal(shape, gen, 0.0, math.sqrt(variance) / _TRUNC_STD)


class Initializer(Declared):
    """A Keras initializer: its declared config, and a draw of a shape from a generator. The
    seed is accepted and written back; draws come from the model's seeded generator instead."""

    def __init__(self, loc: Loc = (), **values: Any) -> None:
        #: Where the initializer was named, for errors found when a weight is drawn.
        self.loc = loc
        super().__init__(**values)

    def __call__(self, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
        raise NotImplementedError


INITIALIZERS: Registry[Initializer] = Registry("initializer")


class _Preset(Initializer):
    """A variance-scaling initializer with Keras's fixed scale, mode and distribution. Keras 3.15
    writes input_axes/output_axes (null unless the fans are axis-selected)."""

    scale: ClassVar[float]
    mode: ClassVar[str]
    distribution: ClassVar[str]
    seed = anything()
    input_axes = must_be_null()
    output_axes = must_be_null()

    def __call__(self, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
        return _variance_scaling(shape, gen, self.scale, self.mode, self.distribution)


@INITIALIZERS.add("glorot_uniform")
class GlorotUniform(_Preset):
    scale, mode, distribution = 1.0, "fan_avg", "uniform"


@INITIALIZERS.add("glorot_normal")
class GlorotNormal(_Preset):
    scale, mode, distribution = 1.0, "fan_avg", "truncated_normal"


@INITIALIZERS.add("he_uniform")
class HeUniform(_Preset):
    scale, mode, distribution = 2.0, "fan_in", "uniform"


@INITIALIZERS.add("he_normal")
class HeNormal(_Preset):
    scale, mode, distribution = 2.0, "fan_in", "truncated_normal"


@INITIALIZERS.add("lecun_uniform")
class LecunUniform(_Preset):
    scale, mode, distribution = 1.0, "fan_in", "uniform"


@INITIALIZERS.add("lecun_normal")
class LecunNormal(_Preset):
    scale, mode, distribution = 1.0, "fan_in", "truncated_normal"


_DISTRIBUTIONS = ["truncated_normal", "untruncated_normal", "uniform", "normal"]


@INITIALIZERS.add("variance_scaling")
class VarianceScaling(Initializer):
    """`scale / fan` as the variance of a (truncated) normal or uniform draw; Keras writes
    "normal" back as "truncated_normal"."""

    scale = number(1.0, min_value=0.0, min_exclusive=True)
    mode = string("fan_in", choices=["fan_in", "fan_out", "fan_avg"])
    distribution = string("truncated_normal", choices=_DISTRIBUTIONS)
    seed = anything()
    input_axes = must_be_null()
    output_axes = must_be_null()

    def __post_init__(self) -> None:
        if self.distribution == "normal":
            self.distribution = "truncated_normal"

    def __call__(self, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
        return _variance_scaling(shape, gen, self.scale, self.mode, self.distribution)


@INITIALIZERS.add("orthogonal", "OrthogonalInitializer")
class Orthogonal(Initializer):
    """Keras's Orthogonal: the Q of a QR decomposition of a standard normal matrix shaped
    `(max(rows, cols), min(rows, cols))`, rows being the product of all but the last dimension,
    its columns' signs fixed by R's diagonal (so Q is uniformly distributed), transposed when
    there are fewer rows than columns."""

    seed = anything()
    gain = number(1.0)

    def __call__(self, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
        if len(shape) < 2:
            raise ConfigError(self.loc, f"Orthogonal needs a weight of rank 2 or more, got {shape}")
        rows, cols = math.prod(shape[:-1]), shape[-1]
        a = torch.empty((max(rows, cols), min(rows, cols))).normal_(0.0, 1.0, generator=gen)
        q, r = torch.linalg.qr(a)
        q = q * torch.sign(torch.diagonal(r))
        if rows < cols:
            q = q.T
        return (self.gain * q).reshape(shape).contiguous()


@INITIALIZERS.add("identity_initializer", "identity", "Identity")
class IdentityInitializer(Initializer):
    gain = number(1.0)

    def __call__(self, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
        if len(shape) != 2:
            raise ConfigError(self.loc, f"Identity needs a 2-D weight, got shape {list(shape)}")
        return self.gain * torch.eye(*shape)


@INITIALIZERS.add("zeros")
class Zeros(Initializer):
    def __call__(self, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
        return torch.full(shape, 0.0)


@INITIALIZERS.add("ones")
class Ones(Initializer):
    def __call__(self, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
        return torch.full(shape, 1.0)


@INITIALIZERS.add("constant")
class Constant(Initializer):
    value = number(0.0)

    def __call__(self, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
        return torch.full(shape, self.value)


@INITIALIZERS.add("random_uniform", "uniform")
class RandomUniform(Initializer):
    minval = number(-0.05)
    maxval = number(0.05)
    seed = anything()

    @classmethod
    def _validate(cls, values: dict[str, Any], loc: Loc) -> None:
        if values["maxval"] < values["minval"]:
            raise ConfigError((*loc, "maxval"), "must be >= minval")

    def __call__(self, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
        return torch.empty(shape).uniform_(self.minval, self.maxval, generator=gen)


@INITIALIZERS.add("random_normal", "normal")
class RandomNormal(Initializer):
    mean = number(0.0)
    stddev = number(0.05, min_value=0.0)
    seed = anything()

    def __call__(self, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
        return torch.empty(shape).normal_(self.mean, self.stddev, generator=gen)


@INITIALIZERS.add("truncated_normal")
class TruncatedNormal(RandomNormal):
    def __call__(self, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
        return _truncated_normal(shape, gen, self.mean, self.stddev)


def get(identifier: Any, loc: Loc) -> tuple[dict[str, Any], Init]:
    """Resolve an initializer to (its canonical Keras config, a function of shape and generator)."""
    if isinstance(identifier, str):
        name, config = identifier, {}
    elif isinstance(identifier, dict) and isinstance(identifier.get("class_name"), str):
        name, config = identifier["class_name"], dict(identifier.get("config") or {})
    else:
        raise ConfigError(
            loc, f"an initializer is a name or {{class_name, config}}, got {identifier!r}"
        )
    if name not in INITIALIZERS.all_names():
        raise ConfigError(
            loc, f"unknown initializer {name!r}; expected one of {INITIALIZERS.names()}"
        )
    cls = INITIALIZERS.lookup(name, loc)
    init = cls(loc, **cls.read_config(config, (*loc, "config")))
    return {"class_name": cls.__name__, "config": init.get_config()}, init


__all__ = ["INITIALIZERS", "Initializer", "compute_fans", "get"]


def initializer_names() -> list[str]:
    """The initializer class names accepted (snake_case spellings resolve to them too)."""
    return INITIALIZERS.names()
