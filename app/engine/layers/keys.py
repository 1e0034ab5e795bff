"""The config keys layers share, declared with `app.engine.config.declared`'s `Key`s: a layer
lists them as class attributes, in Keras's config order (see `app.engine.layers.base`).

- `activation(default)`: an activation name (or `{class_name}` object), kept as its canonical
  name; the layer resolves the function in `__post_init__` (`activations.get(name, ())`).
- `initializer(default)`: an initializer name or `{class_name, config}`, kept as Keras's canonical
  `{class_name, config}`; the layer draws with `initializers.get(config, ())`'s function.
- `regularizer(weight)`, `constraint(weight)`: `<option>_regularizer` / `<option>_constraint`,
  applied to the named weight by the base class.
- `data_format()`, `must_be_null()`, and the general kinds (`integer`, `number`, `boolean`, ...).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from app.engine.config.declared import (
    REQUIRED,
    Key,
    anything,
    boolean,
    integer,
    integer_or_none,
    must_be_null,
    number,
    number_or_none,
    string,
    string_or_none,
)
from app.engine.config.errors import ConfigError, Loc
from app.engine.config.readers import get_bool, get_float, get_str
from app.engine.layers import activations
from app.engine.layers.base import (
    check_activity_regularizer,
    constraint,
    regularizer,
    serialize_option,
)
from app.engine.weights import initializers, regularizers

__all__ = [
    "REQUIRED",
    "Key",
    "activation",
    "anything",
    "boolean",
    "constraint",
    "data_format",
    "initializer",
    "integer",
    "integer_or_none",
    "must_be_null",
    "number",
    "number_or_none",
    "rate",
    "regularizer",
    "string",
    "string_or_none",
]


def activation(default: Any = None) -> Key[str]:
    """An activation, kept as its name (None is Keras's "linear")."""

    def read(config: Mapping[str, Any], key: str, loc: Loc, default: Any = default) -> str:
        if key not in config and default is REQUIRED:
            raise ConfigError((*loc, key), "is required")
        return activations.get(config.get(key, default), (*loc, key))[0]

    return Key(read, default if default is REQUIRED else activations.get(default, ())[0])


def initializer(default: str, *, null: bool = False, empty: bool = False) -> Key[dict[str, Any]]:
    """An initializer, kept as Keras's canonical `{class_name, config}`; `default` when absent.
    With `null`, a null value stands for `default` too (and with `empty`, any empty value: "",
    {}, 0, false), as the layers whose Keras code reads it with `or` do."""
    canonical = initializers.get(default, ())[0]

    def read(
        config: Mapping[str, Any], key: str, loc: Loc, default: Any = canonical
    ) -> dict[str, Any]:
        value = config.get(key, default)
        if (null and value is None) or (empty and not value):
            value = default
        return initializers.get(value, (*loc, key))[0]

    return Key(read, canonical)


def rate(default: Any = REQUIRED) -> Key[float]:
    """A dropout rate, in [0, 1)."""

    def read(config: Mapping[str, Any], key: str, loc: Loc, *given: Any) -> float:
        value = float(get_float(config, key, loc, *given, min_value=0.0))
        if value >= 1.0:
            raise ConfigError((*loc, key), f"must be in [0, 1), got {value}")
        return value

    return Key(read, default)


def data_format(default: str = "channels_last") -> Key[str]:
    """Keras's `data_format`; null is its default, channels_last."""

    def read(config: Mapping[str, Any], key: str, loc: Loc, default: Any = default) -> str:
        value = get_str(config, key, loc, None, choices=["channels_last", "channels_first"])
        return value or default

    return Key(read, default)


# -- the kernel group's (convolutions, EinsumDense, Embedding, MultiHeadAttention) --------------
def activity_regularizer(*, name: str = "") -> Key[regularizers.Regularizer | None]:
    """`activity_regularizer`, declared by a layer whose Keras config writes it among its own keys
    (elsewhere the base class reads it, and writes it after `dtype` when set). It is applied to
    the layer's output as for any layer. `name` gives the config key where the attribute is
    another (MultiHeadAttention keeps its projections' one apart from its own)."""

    def read(
        config: Mapping[str, Any], key: str, loc: Loc, default: Any = None
    ) -> regularizers.Regularizer | None:
        value = regularizers.get(config.get(key), (*loc, key))
        if value is not None:
            check_activity_regularizer(value, (*loc, key))
        return value

    return Key(read, None, dump=serialize_option, name=name)


# -- recurrent group: recurrent layers, wrappers, normalization, noise ----------------------------
def must_be_false(message: str) -> Key[bool]:
    """A boolean Keras writes that only false is supported for (`message` says why)."""

    def read(config: Mapping[str, Any], key: str, loc: Loc, default: Any = False) -> bool:
        if get_bool(config, key, loc, default):
            raise ConfigError((*loc, key), message)
        return False

    return Key(read, False)


def draw(layer: Any, key: str, loc: Loc) -> initializers.Init:
    """The function that draws the weights of `layer`'s initializer key `key`. Resolve it in
    `build`, whose `loc` makes a shape the initializer cannot fill (Orthogonal on a vector) a
    ConfigError at `(*loc, key)`."""
    return initializers.get(getattr(layer, key), (*loc, key))[1]
