"""The Keras Normalization preprocessing layer: `(x - mean) / max(sqrt(variance), 1e-7)`.

With `mean` and `variance` in its config the constants live in the config and the layer has no
weights; without them it holds `[mean, variance, count]` weights initialised to 0, 1 and 0, so an
unadapted layer is the identity, as in Keras. `adapt` is Keras's adapt on one array (the model-level
version, which feeds each layer what it sees inside a model, is app.engine.training.adapt)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from app.engine.config.declared import Key
from app.engine.config.errors import ConfigError, DataError, Loc
from app.engine.layers import keys
from app.engine.layers.base import LAYERS, Layer, Shape

_EPSILON = 1e-7


def _constant(value: Any, loc: Loc) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ConfigError(loc, "must be a number or a nested list of finite numbers") from exc
    if not np.all(np.isfinite(arr)):
        raise ConfigError(loc, "must be finite")
    return arr


def _read_axis(config: Mapping[str, Any], key: str, loc: Loc, default: Any) -> tuple[int, ...]:
    """An int, a list of them, or null (every axis but none: one mean for everything)."""
    value = config.get(key, -1)
    if value is None:
        return ()
    if isinstance(value, int) and not isinstance(value, bool):
        return (value,)
    if isinstance(value, list | tuple) and all(
        isinstance(a, int) and not isinstance(a, bool) for a in value
    ):
        return tuple(value)
    raise ConfigError((*loc, key), f"must be an integer, a list of them or null, got {value!r}")


def _write_axis(axis: tuple[int, ...]) -> Any:
    return None if not axis else axis[0] if len(axis) == 1 else list(axis)


def _read_stat(config: Mapping[str, Any], key: str, loc: Loc, default: Any) -> np.ndarray | None:
    value = config.get(key)
    return None if value is None else _constant(value, (*loc, key))


def _stat_key(name: str) -> Key[np.ndarray | None]:
    """`mean` or `variance` from the config; kept as `<name>_value` (the weights take the name)."""
    return Key(_read_stat, None, name=name, dump=lambda v: None if v is None else v.tolist())


@LAYERS.add()
class Normalization(Layer):
    integer_input = "as_is"  # converted here, as Keras's call converts it (adapt sees it raw)
    supports_masking = True
    axis = Key[tuple[int, ...]](_read_axis, (-1,), dump=_write_axis)
    mean_value = _stat_key("mean")
    variance_value = _stat_key("variance")
    invert = keys.boolean(False)
    mean: torch.Tensor
    variance: torch.Tensor
    _mean_const: torch.Tensor
    _variance_const: torch.Tensor

    @classmethod
    def _validate(cls, values: dict[str, Any], loc: Loc) -> None:
        has_mean, has_var = values["mean"] is not None, values["variance"] is not None
        if has_mean != has_var:
            raise ConfigError(
                (*loc, "variance" if has_mean else "mean"),
                "give both mean and variance, or neither",
            )
        if has_var and np.any(values["variance"] < 0):
            raise ConfigError((*loc, "variance"), "must not be negative")

    def __post_init__(self) -> None:
        self.trainable = False  # its weights are statistics, set by adapt
        self._broadcast: tuple[int, ...] = ()
        self._keep: tuple[int, ...] = ()

    def build(self, input_shape: Shape, generator: torch.Generator, loc: Loc) -> Shape:
        rank = len(input_shape)
        keep = []
        for a in self.axis:
            if not -rank < a < rank or a % rank == 0:
                raise ConfigError(
                    (*loc, "axis"), f"axis {a} is out of range for input shape {input_shape}"
                )
            keep.append(a % rank)
        # Sorted as Keras sorts them: the weights' axes follow the input's axis order.
        keep.sort()
        self._keep = tuple(keep)
        sizes = [input_shape[a] for a in keep]
        if any(s is None for s in sizes):
            raise ConfigError(
                (*loc, "axis"), f"the normalized axes need known sizes, got {input_shape}"
            )
        self._broadcast = tuple(input_shape[d] if d in keep else 1 for d in range(rank))  # type: ignore[misc]
        weight_shape = tuple(s for s in sizes if s is not None)
        if self.mean_value is None:
            self.add_weight("mean", torch.zeros(weight_shape), trainable=False)
            self.add_weight("variance", torch.ones(weight_shape), trainable=False)
            self.add_weight("count", torch.zeros((), dtype=torch.int64), trainable=False)
        else:
            assert self.variance_value is not None
            for key, value in (("mean", self.mean_value), ("variance", self.variance_value)):
                try:
                    tensor = torch.from_numpy(np.broadcast_to(value, self._broadcast).copy())
                except ValueError as exc:
                    raise ConfigError(
                        (*loc, key), f"shape {value.shape} does not broadcast to {self._broadcast}"
                    ) from exc
                self.register_buffer(f"_{key}_const", tensor, persistent=False)
        return input_shape

    def _stats(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.mean_value is None:
            return self.mean.reshape(self._broadcast), self.variance.reshape(self._broadcast)
        return self._mean_const, self._variance_const

    def forward(self, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        if x.dtype != torch.float32:  # an integer input (app.engine.arrays.dtypes)
            x = x.to(torch.float32)
        mean, variance = self._stats()
        if self.invert:
            return mean + x * torch.sqrt(variance).clamp_min(_EPSILON)
        return (x - mean) / torch.sqrt(variance).clamp_min(_EPSILON)

    def adapt(self, data: np.ndarray, loc: Loc = ()) -> None:
        """Keras's `adapt` on one array shaped like this layer's input: numpy's mean and
        population variance over every axis but the kept ones, computed in the array's own
        dtype (float32 data gives Keras's float32 numbers), stored as the `mean` and `variance`
        weights. `count` stays as it is: Keras does not update it for array data."""
        if self.mean_value is not None:
            raise ConfigError(
                loc,
                f"layer {self.name!r} has mean and variance in its config; "
                "only a Normalization without them can be adapted",
            )
        fits = data.ndim == len(self._broadcast) and all(
            data.shape[d] == self._broadcast[d] for d in self._keep
        )
        if not fits or data.shape[0] == 0:
            want = ", ".join(
                str(s) if d in self._keep else "any" for d, s in enumerate(self._broadcast)
            )
            raise DataError(
                loc,
                f"layer {self.name!r} adapts on non-empty data of shape [{want}], "
                f"got {list(data.shape)}",
            )
        reduce = tuple(d for d in range(data.ndim) if d not in self._keep)
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused below
            mean = np.asarray(np.mean(data, axis=reduce), dtype=np.float32)
            variance = np.asarray(np.var(data, axis=reduce), dtype=np.float32)
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(variance))):
            raise DataError(
                loc,
                f"layer {self.name!r}: the data's mean or variance is not finite (values too "
                "large, or not finite themselves)",
            )
        with torch.no_grad():
            self.mean.copy_(torch.from_numpy(mean).reshape(self.mean.shape))
            self.variance.copy_(torch.from_numpy(variance).reshape(self.variance.shape))

    def is_adaptable(self) -> bool:
        """Only a layer without constant mean and variance in its config holds weights to
        adapt."""
        return self.mean_value is None

    def is_unadapted(self) -> bool:
        """Still at the initial state: mean all 0 and variance all 1. (A layer adapted on data
        whose statistics are exactly those cannot be told apart, and counts as unadapted.)"""
        if self.mean_value is not None:
            return False
        return bool(torch.all(self.mean == 0)) and bool(torch.all(self.variance == 1))
