"""Keras activation functions by name (the strings `Dense(activation=...)` accepts)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from app.engine.errors import ConfigError, Loc

Activation = Callable[[torch.Tensor], torch.Tensor]


def _linear(x: torch.Tensor) -> torch.Tensor:
    return x


def _softmax(x: torch.Tensor) -> torch.Tensor:
    return torch.softmax(x, dim=-1)


def _log_softmax(x: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(x, dim=-1)


def _leaky_relu(x: torch.Tensor) -> torch.Tensor:
    # Keras's function default slope is 0.2 (the LeakyReLU layer's is 0.3; torch's is 0.01).
    return F.leaky_relu(x, negative_slope=0.2)


def _relu6(x: torch.Tensor) -> torch.Tensor:
    return torch.clamp(x, 0.0, 6.0)


def _hard_sigmoid(x: torch.Tensor) -> torch.Tensor:
    # Keras 3: relu6(x + 3) / 6, which is torch's hardsigmoid (Keras 2 used 0.2x + 0.5).
    return F.hardsigmoid(x)


def _hard_silu(x: torch.Tensor) -> torch.Tensor:
    return x * F.hardsigmoid(x)


def _gelu(x: torch.Tensor) -> torch.Tensor:
    # The string "gelu" is the exact erf form in Keras (ops.gelu's default is the tanh form).
    return F.gelu(x, approximate="none")


def _softsign(x: torch.Tensor) -> torch.Tensor:
    return x / (1.0 + torch.abs(x))


def _log_sigmoid(x: torch.Tensor) -> torch.Tensor:
    return F.logsigmoid(x)


def _mish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.tanh(F.softplus(x))


def _tanh_shrink(x: torch.Tensor) -> torch.Tensor:
    return x - torch.tanh(x)


def _hard_tanh(x: torch.Tensor) -> torch.Tensor:
    return torch.clamp(x, -1.0, 1.0)


def _squareplus(x: torch.Tensor) -> torch.Tensor:
    # Keras's default b = 4.
    return (x + torch.sqrt(x * x + 4.0)) / 2.0


def _soft_shrink(x: torch.Tensor) -> torch.Tensor:
    return F.softshrink(x, 0.5)


def _hard_shrink(x: torch.Tensor) -> torch.Tensor:
    return F.hardshrink(x, 0.5)


def _selu(x: torch.Tensor) -> torch.Tensor:
    return F.selu(x)


def _celu(x: torch.Tensor) -> torch.Tensor:
    return F.celu(x, alpha=1.0)


ACTIVATIONS: dict[str, Activation] = {
    "linear": _linear,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "softmax": _softmax,
    "log_softmax": _log_softmax,
    "elu": F.elu,
    "selu": _selu,
    "celu": _celu,
    "softplus": F.softplus,
    "softsign": _softsign,
    "exponential": torch.exp,
    "silu": F.silu,
    "swish": F.silu,
    "gelu": _gelu,
    "leaky_relu": _leaky_relu,
    "relu6": _relu6,
    "hard_sigmoid": _hard_sigmoid,
    "hard_silu": _hard_silu,
    "hard_swish": _hard_silu,
    "log_sigmoid": _log_sigmoid,
    "mish": _mish,
    "tanh_shrink": _tanh_shrink,
    "hard_tanh": _hard_tanh,
    "squareplus": _squareplus,
    "soft_shrink": _soft_shrink,
    "hard_shrink": _hard_shrink,
}


def get(identifier: Any, loc: Loc) -> tuple[str, Activation]:
    """Resolve an activation: a name, None (linear), or `{class_name: name}` as Keras allows."""
    if identifier is None:
        return "linear", _linear
    name = identifier
    if isinstance(identifier, dict):
        name = identifier.get("class_name")
        config = identifier.get("config") or {}
        if config and not (isinstance(config, dict) and set(config) <= {"name"}):
            raise ConfigError(loc, "parametrised activation objects are not supported yet")
    if not isinstance(name, str):
        raise ConfigError(loc, f"an activation is a name, got {identifier!r}")
    fn = ACTIVATIONS.get(name)
    if fn is None:
        raise ConfigError(
            loc, f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}"
        )
    return name, fn
