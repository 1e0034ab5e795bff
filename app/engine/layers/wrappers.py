"""Keras's layer wrappers: Bidirectional (a recurrent layer run forwards and backwards, outputs
merged) and TimeDistributed (a layer applied to every timestep).

A wrapped layer is given as Keras writes it, `{class_name, config}`, and built from the LAYERS
registry; its weights are the wrapper's, in Keras's order (Bidirectional: the forward layer's,
then the backward layer's), and so are its weight penalties and constraints. A wrapper takes its
own activity_regularizer (on the merged output); the wrapped layers' activity penalties count
under Bidirectional but not under TimeDistributed, which Keras runs without `__call__`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from app.engine.config.errors import ConfigError, Loc
from app.engine.config.readers import get_str
from app.engine.config.registry import known_keys, to_snake_case
from app.engine.layers import keys
from app.engine.layers.base import LAYERS, Layer, Shape, check_dtype
from app.engine.layers.recurrent import _Gated
from app.engine.layers.recurrent_base import Recurrent

Tensor = torch.Tensor
_ENTRY_KEYS = ("module", "class_name", "config", "registered_name", "build_config")
MERGE_MODES = ("concat", "sum", "mul", "ave")
_RECURRENT = "Bidirectional wraps a recurrent layer: SimpleRNN, LSTM or GRU"
# Layers whose output for one sample depends on the rest of the batch: Keras runs them once
# per timestep (with batch statistics per step), so they are not folded into one big batch.
_PER_STEP = ("BatchNormalization",)


def parse_wrapped(
    entry: Any, loc: Loc, *, rename: Any = None, overrides: Mapping[str, Any] | None = None
) -> Layer:
    """Build the layer a wrapper's `layer` entry describes (a `{class_name, config}` object)."""
    if not isinstance(entry, Mapping):
        raise ConfigError(loc, "must be a layer object with class_name and config")
    known_keys(entry, _ENTRY_KEYS, loc)
    cls, config, cloc = LAYERS.parse(entry, loc)
    check_dtype(config, cloc)
    name = get_str(config, "name", cloc, None) or to_snake_case(cls.class_name)
    config = {**config, **(overrides or {})}
    return cls.from_config(config, cloc, name=rename(name) if rename else name)


def _entry(layer: Layer) -> dict[str, Any]:
    return {
        "module": "keras.layers",
        "class_name": layer.class_name,
        "config": layer.get_config(),
        "registered_name": None,
    }


def _with_prefix(prefix: str) -> Any:
    return lambda name: prefix + name.removeprefix(prefix)


class _Wrapper(Layer):
    """Shared plumbing: the wrapped layers' weights, losses, constraints and generator."""

    supports_masking = True
    uses_mask = True

    def groups(self) -> list[tuple[str, Layer]]:
        """The wrapped layers, each with the name of its group in a `.keras` weights file."""
        raise NotImplementedError

    def inner(self) -> list[Layer]:
        return [layer for _, layer in self.groups()]

    def count_params(self) -> tuple[int, int]:
        # Whether a wrapped weight trains is the wrapped layer's own `trainable`: Keras applies
        # a wrapper's `trainable: false` from a config before the wrapped layers exist, so it
        # freezes nothing (a wrapper frozen in Keras writes false into the wrapped configs).
        counts = [layer.count_params() for layer in self.inner()]
        return sum(c[0] for c in counts), sum(c[1] for c in counts)

    @property
    def generator(self) -> torch.Generator | None:
        return getattr(self.inner()[0], "generator", None)

    @generator.setter
    def generator(self, value: torch.Generator | None) -> None:
        for layer in self.inner():
            if hasattr(layer, "generator"):
                setattr(layer, "generator", value)  # noqa: B010 - Module typing

    def keras_weights(self) -> list[tuple[str, torch.Tensor]]:
        many = len(self.inner()) > 1
        return [
            (f"{group}/{n}" if many else n, t)
            for group, layer in self.groups()
            for n, t in layer.keras_weights()
        ]

    def h5_paths(self) -> list[str]:
        return [f"{group}/{p}" for group, layer in self.groups() for p in layer.h5_paths()]

    # Keras's `layer.losses` for a wrapper: every activity penalty first (the wrapper's own,
    # then the wrapped layers'), then the weight penalties in trainable-weights order.
    def added_losses(self) -> list[torch.Tensor]:
        return [*self.activity_losses(), *self.weight_losses()]

    def activity_losses(self) -> list[torch.Tensor]:
        inner = [loss for layer in self.inner() for loss in layer.activity_losses()]
        return [*super().activity_losses(), *inner]

    def weight_losses(self) -> list[torch.Tensor]:
        return [loss for layer in self.inner() for loss in layer.weight_losses()]

    @property
    def has_added_losses(self) -> bool:
        own = self.activity_regularizer is not None
        return own or any(layer.has_added_losses for layer in self.inner())

    @property
    def has_constraints(self) -> bool:
        return any(layer.has_constraints for layer in self.inner())

    def apply_constraints(self) -> None:
        for layer in self.inner():
            layer.apply_constraints()


def _read_merge_mode(config: Mapping[str, Any], key: str, loc: Loc, default: str) -> str:
    if key in config and config[key] is None:
        raise ConfigError(
            (*loc, key),
            "null returns the two directions as two outputs, and a layer in a Sequential "
            f"model has exactly one output; use one of {list(MERGE_MODES)}",
        )
    mode: str = get_str(config, key, loc, default, choices=MERGE_MODES)
    return mode


def _recurrent(layer: Layer, loc: Loc) -> Recurrent:
    if not isinstance(layer, Recurrent):
        raise ConfigError((*loc, "class_name"), _RECURRENT)
    return layer


def _read_forward(config: Mapping[str, Any], key: str, loc: Loc) -> Recurrent:
    if key not in config:
        raise ConfigError((*loc, key), "is required: the recurrent layer to wrap")
    layer = parse_wrapped(config[key], (*loc, key), rename=_with_prefix("forward_"))
    return _recurrent(layer, (*loc, key))


def _read_backward(config: Mapping[str, Any], key: str, loc: Loc) -> Recurrent:
    """The backward layer as given, or the forward layer's config going backwards."""
    if config.get(key) is None:
        layer = parse_wrapped(
            config["layer"],
            (*loc, "layer"),
            rename=_with_prefix("backward_"),
            overrides={"go_backwards": True},
        )
        return _recurrent(layer, (*loc, "layer"))
    return _recurrent(parse_wrapped(config[key], (*loc, key)), (*loc, key))


@LAYERS.add()
class Bidirectional(_Wrapper):
    # A wrapped layer is a torch submodule: setting its key registers it (nn.Module's
    # __setattr__), and reading the key finds it there (nn.Module's __getattr__).
    merge_mode = keys.Key[str](_read_merge_mode, "concat")
    layer = keys.Key[Recurrent](_read_forward, dump=_entry)
    backward_layer = keys.Key[Recurrent](_read_backward, dump=_entry)

    @classmethod
    def _validate(cls, values: dict[str, Any], loc: Loc) -> None:
        if values["layer"].go_backwards == values["backward_layer"].go_backwards:
            raise ConfigError(
                (*loc, "backward_layer", "config", "go_backwards"),
                "the forward and backward layers must differ in go_backwards",
            )
        if values["layer"].return_sequences != values["backward_layer"].return_sequences:
            raise ConfigError(
                (*loc, "backward_layer", "config", "return_sequences"),
                "must equal the forward layer's return_sequences",
            )

    def __post_init__(self) -> None:
        self.return_sequences = self.layer.return_sequences
        for sub in (self.layer, self.backward_layer):
            # Keras makes masked steps output zeros in both directions of a returned sequence.
            sub.zero_output_for_mask = sub.return_sequences
            if isinstance(sub, _Gated) and isinstance(self.layer, _Gated):
                sub.use_cudnn = self.layer.use_cudnn

    def groups(self) -> list[tuple[str, Layer]]:
        return [("forward_layer", self.layer), ("backward_layer", self.backward_layer)]

    def build(self, input_shape: Shape, generator: torch.Generator, loc: Loc) -> Shape:
        out = self.layer.build(input_shape, generator, (*loc, "layer", "config"))
        self.layer.output_shape = out
        back = self.backward_layer.build(input_shape, generator, (*loc, "backward_layer", "config"))
        self.backward_layer.output_shape = back
        last, back_last = out[-1], back[-1]
        assert last is not None and back_last is not None
        if self.merge_mode == "concat":
            return (*out[:-1], last + back_last)
        if last != back_last:
            raise ConfigError(
                (*loc, "merge_mode"),
                f"{self.merge_mode!r} needs both directions to have the same units, got "
                f"{last} and {back_last}",
            )
        return out

    def compute_mask(self, x: Any, mask: Any) -> Tensor | None:
        return mask if self.return_sequences else None

    def forward(self, x: Tensor, training: bool = False, mask: Tensor | None = None) -> Tensor:
        y = self.layer(x, training, mask=mask)
        y_rev = self.backward_layer(x, training, mask=mask)
        if self.return_sequences:
            y_rev = torch.flip(y_rev, [1])
        if self.merge_mode == "concat":
            return torch.cat([y, y_rev], dim=-1)
        if self.merge_mode == "sum":
            return y + y_rev
        if self.merge_mode == "ave":
            return (y + y_rev) / 2
        return y * y_rev


def _read_step_layer(config: Mapping[str, Any], key: str, loc: Loc) -> Layer:
    if key not in config:
        raise ConfigError((*loc, key), "is required: the layer to apply to each timestep")
    layer = parse_wrapped(config[key], (*loc, key))
    if layer.multi_input or layer.input_names:
        raise ConfigError(
            (*loc, key, "class_name"),
            f"TimeDistributed applies a single-input layer, got {layer.class_name}",
        )
    return layer


@LAYERS.add()
class TimeDistributed(_Wrapper):
    """The wrapped layer applied to each timestep: the batch and time axes are folded into one
    batch (the same numbers as Keras's loop over steps), except for layers that use batch
    statistics, which run once per step as in Keras."""

    layer = keys.Key[Layer](_read_step_layer, dump=_entry)  # a submodule (see Bidirectional)

    def __post_init__(self) -> None:
        self.per_step = self.layer.class_name in _PER_STEP

    def groups(self) -> list[tuple[str, Layer]]:
        return [("layer", self.layer)]

    def build(self, input_shape: Shape, generator: torch.Generator, loc: Loc) -> Shape:
        if len(input_shape) < 3:
            raise ConfigError(
                loc,
                "TimeDistributed takes inputs of shape (batch, timesteps, ...), at least 3 "
                f"dimensions, got {input_shape}",
            )
        step_shape = (input_shape[0], *input_shape[2:])
        out = self.layer.build(step_shape, generator, (*loc, "layer", "config"))
        self.layer.output_shape = out
        return (out[0], input_shape[1], *out[1:])

    def check_input(self, x: np.ndarray, loc: Loc) -> None:
        self.layer.check_input(x, loc)

    def activity_losses(self) -> list[torch.Tensor]:
        # Keras runs the wrapped layer's `call` directly, never its `__call__`, so the wrapped
        # layer's own activity_regularizer is accepted and written back but never applied.
        return list(self._activity_losses)

    def mask_shape(self, input_shape: Any) -> Any:
        return input_shape[:2]  # (batch, steps), whatever each step holds

    def forward(self, x: Tensor, training: bool = False, mask: Tensor | None = None) -> Tensor:
        batch, steps = x.shape[0], x.shape[1]
        if not self.layer.uses_mask:
            mask = None
        if self.per_step:
            outs = [
                self.layer(x[:, t], training, **({} if mask is None else {"mask": mask[:, t]}))
                for t in range(steps)
            ]
            return torch.stack(outs, dim=1)
        kwargs = {} if mask is None else {"mask": mask.reshape(batch * steps, *mask.shape[2:])}
        y = self.layer(x.reshape(batch * steps, *x.shape[2:]), training, **kwargs)
        return y.reshape(batch, steps, *y.shape[1:])
