"""A base for Keras metrics whose state is several float32 tensors (confusion counts, R2's
per-column sums) rather than a running mean: made with the shapes the first update needs, on
that update's device, and only ever changed in place by device ops, so updates never wait on
the GPU."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from app.engine.config.declared import Key
from app.engine.config.errors import ConfigError, DataError, Loc
from app.engine.metrics.base import Metric

# Bounds on the hyperparameters that size a metric's state, checked before anything is allocated:
# generous for real use (Keras's default is 200 thresholds), far from what exhausts memory.
MAX_THRESHOLDS = 10_000  # num_thresholds: (thresholds[, labels]) counts, bucketed per batch
MAX_GIVEN_THRESHOLDS = 1_000  # an explicit list is compared with every prediction of a batch
MAX_LABELS = 4_096  # AUC's num_labels with multi_label

Tensor = torch.Tensor
Shape = tuple[int, ...]


class StateMetric(Metric):
    """Named float32 state tensors; `result` is 0.0 before the first update."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._device: torch.device | None = None
        self._vars: dict[str, Tensor] | None = None

    def _state(self, device: torch.device, shapes: Mapping[str, Shape]) -> dict[str, Tensor]:
        if self._vars is None:
            self._device = device
            self._vars = {
                key: torch.zeros(shape, dtype=torch.float32, device=device)
                for key, shape in shapes.items()
            }
        elif self._device != device:
            self.to(device)
        assert self._vars is not None
        for key, shape in shapes.items():
            if tuple(self._vars[key].shape) != tuple(shape):
                raise DataError(
                    ("y_pred",),
                    f"metric {self.name!r} was built for state of shape "
                    f"{tuple(self._vars[key].shape)}, got inputs needing {tuple(shape)}",
                )
        return self._vars

    def to(self, device: torch.device | str) -> StateMetric:
        self._device = torch.device(device)
        if self._vars is not None:
            self._vars = {key: v.to(self._device) for key, v in self._vars.items()}
        return self

    def reset_state(self) -> None:
        if self._vars is not None:
            for v in self._vars.values():
                v.zero_()

    def result(self) -> Tensor:
        if self._vars is None:
            return torch.zeros((), dtype=torch.float32, device=self._device)
        with torch.no_grad():
            return self._result(self._vars)

    def _result(self, state: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError


def as_float(x: Tensor) -> Tensor:
    return x if x.dtype == torch.float32 else x.to(torch.float32)


def weight_tensor(sample_weight: Tensor | None, like: Tensor) -> Tensor | None:
    if sample_weight is None:
        return None
    return torch.as_tensor(sample_weight).detach().to(device=like.device, dtype=torch.float32)


def get_thresholds(
    config: Mapping[str, Any], key: str, loc: Loc, *, single: bool, in_unit: bool = True
) -> Any:
    """A number or a list of numbers (kept as given, for the config), each in [0, 1]; with
    `single`, a list must hold one number (more thresholds would make a vector result)."""
    value = config.get(key)
    if value is None:
        return None
    values: Sequence[Any] = value if isinstance(value, list | tuple) else [value]
    if isinstance(value, tuple):
        value = list(value)
    if not values:
        raise ConfigError((*loc, key), "must hold at least one threshold")
    if len(values) > MAX_GIVEN_THRESHOLDS:
        raise ConfigError(
            (*loc, key), f"must hold at most {MAX_GIVEN_THRESHOLDS} thresholds, got {len(values)}"
        )
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ConfigError((*loc, key), f"must be numbers, got {v!r}")
        if in_unit and not 0.0 <= v <= 1.0:
            raise ConfigError((*loc, key), f"threshold values must be in [0, 1], got {v}")
    if single and len(values) != 1:
        raise ConfigError(
            (*loc, key),
            "only one threshold is supported: several give a vector result, which the "
            "training log cannot hold",
        )
    return value


def thresholds_key(*, single: bool, in_unit: bool = True) -> Key[Any]:
    """`thresholds`: null (the metric's default) or `get_thresholds`'s number or list."""

    def read(config: Mapping[str, Any], key: str, loc: Loc, default: None = None) -> Any:
        return get_thresholds(config, key, loc, single=single, in_unit=in_unit)

    return Key(read, None)
