"""Keras weight initializers, drawn from a seeded torch generator so a seeded model is reproducible.

Fans are computed on the Keras kernel shape (`(..., in, out)`), as Keras's `compute_fans` does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from app.engine.config.errors import ConfigError, Loc
from app.engine.config.readers import get_float, get_str
from app.engine.config.registry import known_keys, to_snake_case

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


def _variance_scaling(scale: float, mode: str, distribution: str) -> Init:
    def init(shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
        fan_in, fan_out = compute_fans(shape)
        fan = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
        variance = scale / max(1.0, fan)
        if distribution == "uniform":
            limit = math.sqrt(3.0 * variance)
            return torch.empty(shape).uniform_(-limit, limit, generator=gen)
        if distribution == "untruncated_normal":
            return torch.empty(shape).normal_(0.0, math.sqrt(variance), generator=gen)
        return _truncated_normal(shape, gen, 0.0, math.sqrt(variance) / _TRUNC_STD)

    return init


_VS_PRESETS: dict[str, tuple[float, str, str]] = {
    "GlorotUniform": (1.0, "fan_avg", "uniform"),
    "GlorotNormal": (1.0, "fan_avg", "truncated_normal"),
    "HeUniform": (2.0, "fan_in", "uniform"),
    "HeNormal": (2.0, "fan_in", "truncated_normal"),
    "LecunUniform": (1.0, "fan_in", "uniform"),
    "LecunNormal": (1.0, "fan_in", "truncated_normal"),
}
_STRING_ALIASES = {
    "uniform": "RandomUniform",
    "normal": "RandomNormal",
    "random_uniform": "RandomUniform",
    "random_normal": "RandomNormal",
    "truncated_normal": "TruncatedNormal",
    "zeros": "Zeros",
    "ones": "Ones",
    "constant": "Constant",
    "variance_scaling": "VarianceScaling",
    "orthogonal": "Orthogonal",
    "identity": "IdentityInitializer",
    "OrthogonalInitializer": "Orthogonal",
    "Identity": "IdentityInitializer",
}
_CLASS_NAMES = {
    *_VS_PRESETS,
    "RandomUniform",
    "RandomNormal",
    "TruncatedNormal",
    "Zeros",
    "Ones",
    "Constant",
    "VarianceScaling",
    "Orthogonal",
    "IdentityInitializer",
}


def _orthogonal(gain: float, loc: Loc) -> Init:
    """Keras's Orthogonal: the Q of a QR decomposition of a standard normal matrix shaped
    `(max(rows, cols), min(rows, cols))`, rows being the product of all but the last dimension,
    its columns' signs fixed by R's diagonal (so Q is uniformly distributed), transposed when
    there are fewer rows than columns."""

    def init(shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
        if len(shape) < 2:
            raise ConfigError(loc, f"Orthogonal needs a weight of rank 2 or more, got {shape}")
        rows, cols = math.prod(shape[:-1]), shape[-1]
        a = torch.empty((max(rows, cols), min(rows, cols))).normal_(0.0, 1.0, generator=gen)
        q, r = torch.linalg.qr(a)
        q = q * torch.sign(torch.diagonal(r))
        if rows < cols:
            q = q.T
        return (gain * q).reshape(shape).contiguous()

    return init


def _class_name(name: str) -> str | None:
    if name in _CLASS_NAMES:
        return name
    if name in _STRING_ALIASES:
        return _STRING_ALIASES[name]
    for cls in _CLASS_NAMES:
        if to_snake_case(cls) == name:
            return cls
    return None


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
    cls = _class_name(name)
    if cls is None:
        raise ConfigError(
            loc, f"unknown initializer {name!r}; expected one of {sorted(_CLASS_NAMES)}"
        )
    cloc = (*loc, "config")
    # The seed is accepted; our draws come from the model's seeded generator instead.
    if cls in _VS_PRESETS or cls == "VarianceScaling":
        # Keras 3.15 writes input_axes/output_axes (null unless the fans are axis-selected).
        known_keys(
            config,
            ["seed", "input_axes", "output_axes", "scale", "mode", "distribution"]
            if cls == "VarianceScaling"
            else ["seed", "input_axes", "output_axes"],
            cloc,
        )
        for key in ("input_axes", "output_axes"):
            if config.get(key) is not None:
                raise ConfigError((*cloc, key), "is not supported yet; leave it null")
    if cls in _VS_PRESETS:
        scale, mode, dist = _VS_PRESETS[cls]
        return {"class_name": cls, "config": {"seed": config.get("seed")}}, _variance_scaling(
            scale, mode, dist
        )
    if cls == "VarianceScaling":
        scale = get_float(config, "scale", cloc, 1.0, min_value=0.0, min_exclusive=True)
        mode = get_str(config, "mode", cloc, "fan_in", choices=["fan_in", "fan_out", "fan_avg"])
        dist = get_str(
            config,
            "distribution",
            cloc,
            "truncated_normal",
            choices=["truncated_normal", "untruncated_normal", "uniform", "normal"],
        )
        dist = "truncated_normal" if dist == "normal" else dist
        canon = {"scale": scale, "mode": mode, "distribution": dist, "seed": config.get("seed")}
        return {"class_name": cls, "config": canon}, _variance_scaling(scale, mode, dist)
    if cls == "Orthogonal":
        known_keys(config, ["gain", "seed"], cloc)
        gain = get_float(config, "gain", cloc, 1.0)
        canon = {"seed": config.get("seed"), "gain": gain}
        return {"class_name": cls, "config": canon}, _orthogonal(gain, loc)
    if cls == "IdentityInitializer":
        known_keys(config, ["gain"], cloc)
        gain = get_float(config, "gain", cloc, 1.0)

        def identity(shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
            if len(shape) != 2:
                raise ConfigError(loc, f"Identity needs a 2-D weight, got shape {list(shape)}")
            return gain * torch.eye(*shape)

        return {"class_name": cls, "config": {"gain": gain}}, identity
    if cls in ("Zeros", "Ones"):
        known_keys(config, [], cloc)
        value = 0.0 if cls == "Zeros" else 1.0
        return {"class_name": cls, "config": {}}, lambda s, g: torch.full(s, value)
    if cls == "Constant":
        known_keys(config, ["value"], cloc)
        value = get_float(config, "value", cloc, 0.0)
        return {"class_name": cls, "config": {"value": value}}, lambda s, g: torch.full(s, value)
    if cls == "RandomUniform":
        known_keys(config, ["minval", "maxval", "seed"], cloc)
        lo = get_float(config, "minval", cloc, -0.05)
        hi = get_float(config, "maxval", cloc, 0.05)
        if hi < lo:
            raise ConfigError((*cloc, "maxval"), "must be >= minval")
        canon = {"minval": lo, "maxval": hi, "seed": config.get("seed")}
        return {"class_name": cls, "config": canon}, lambda s, g: torch.empty(s).uniform_(
            lo, hi, generator=g
        )
    known_keys(config, ["mean", "stddev", "seed"], cloc)
    mean = get_float(config, "mean", cloc, 0.0)
    std = get_float(config, "stddev", cloc, 0.05, min_value=0.0)
    canon = {"mean": mean, "stddev": std, "seed": config.get("seed")}
    if cls == "RandomNormal":
        return {"class_name": cls, "config": canon}, lambda s, g: torch.empty(s).normal_(
            mean, std, generator=g
        )
    return {"class_name": cls, "config": canon}, lambda s, g: _truncated_normal(s, g, mean, std)


__all__ = ["compute_fans", "get"]


def initializer_names() -> list[str]:
    """The initializer class names accepted (snake_case spellings resolve to them too)."""
    return sorted(_CLASS_NAMES)
