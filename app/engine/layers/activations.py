"""Keras activation functions by name (the strings `Dense(activation=...)` accepts)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from app.engine.config.errors import ConfigError, Loc

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


def _glu(x: torch.Tensor) -> torch.Tensor:
    return F.glu(x, dim=-1)


def _sparse_plus(x: torch.Tensor) -> torch.Tensor:
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    return torch.where(x <= -1, zero, torch.where(x < 1, 0.25 * (x + 1) ** 2, x))


def _sparse_sigmoid(x: torch.Tensor) -> torch.Tensor:
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    one = torch.ones((), dtype=x.dtype, device=x.device)
    return torch.where(x <= -1, zero, torch.where(x >= 1, one, 0.5 * (x + 1)))


def _sparsemax(x: torch.Tensor) -> torch.Tensor:
    """The Euclidean projection onto the simplex along the last axis (Martins and Astudillo,
    2016), computed in Keras's order of operations."""
    ordered, _ = torch.sort(x, dim=-1, descending=True)
    cumsum = torch.cumsum(ordered, dim=-1)
    rank = torch.arange(1, x.shape[-1] + 1, device=x.device, dtype=x.dtype)
    support = ordered - (cumsum - 1) / rank > 0
    k = torch.sum(support, dim=-1, keepdim=True)
    kept = torch.where(support, cumsum, torch.zeros((), dtype=x.dtype, device=x.device))
    tau = (torch.sum(kept, dim=-1, keepdim=True) - 1) / k
    return torch.clamp(x - tau, min=0.0)


# Keras's `threshold` activation takes required arguments, so no layer can use it by name
# (Keras fails when such a layer runs); it is refused with that reason.
_NEEDS_ARGUMENTS = ("threshold",)

ACTIVATIONS: dict[str, Activation] = {
    "glu": _glu,
    "sparse_plus": _sparse_plus,
    "sparse_sigmoid": _sparse_sigmoid,
    "sparsemax": _sparsemax,
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
    if name in _NEEDS_ARGUMENTS:
        raise ConfigError(
            loc, f"{name!r} needs arguments a layer cannot give it (Keras fails on it too)"
        )
    fn = ACTIVATIONS.get(name)
    if fn is None:
        raise ConfigError(
            loc, f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}"
        )
    return name, fn
