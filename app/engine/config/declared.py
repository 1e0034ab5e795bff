"""Hyperparameters declared once. A configurable engine class lists its config keys as class
attributes (`Key`s: a name, how it is read and checked, a default); everything else derives from
that list, in the order the keys are declared (base classes first, as dataclasses do):

- the keys a config may hold (any other is a ConfigError naming it, listing the allowed ones),
- `from_config(config, loc)`, which reads each key with the typed readers of
  `app.engine.config.readers` (so errors and their `loc`s are those readers'),
- `__init__(**values)`, which sets each key (its default when left out),
- `get_config()`, Keras's canonical config: the saved keys, in declaration order.

    class MaxNorm(Constraint):
        max_value = number(2, min_value=0.0, keep_int=True)
        axis = Key(get_axes, 0)

`MaxNorm(max_value=3).max_value` is 3; `MaxNorm.from_config({"max_value": -1}, loc)` fails at
`(*loc, "max_value")` with "must be >= 0.0, got -1.0". The registered name is the class's own
(`Registry.add`). A subclass that fixes an inherited key's value as a plain class attribute
(Keras's F1Score is FBetaScore with `beta = 1.0`) takes it out of its config keys.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Generic, Self, TypeVar, overload

from app.engine.config.errors import ConfigError, Loc
from app.engine.config.readers import get_bool, get_float, get_int, get_str
from app.engine.config.registry import known_keys

T = TypeVar("T")

#: A reader: `(config, key, loc[, default]) -> value`, raising ConfigError at `(*loc, key)`.
Reader = Callable[..., Any]


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: The default of a key that a config must give.
REQUIRED: Any = _Required()


class Derived:
    """A default computed from the class (e.g. a loss's name is its class's `default_name`)."""

    def __init__(self, of_class: Callable[[Any], Any]) -> None:
        self.of_class = of_class


class Key(Generic[T]):
    """One config key of a `Declared` class, and the instance attribute that holds its value.

    `read` checks the config's value (see `Reader`); `saved=False` keys are read and kept but
    left out of `get_config` (Keras accepts them and does not write them back); `dump` turns the
    value into its config form. The config key is the attribute's name, or `name` where that
    attribute means something else on the class (a layer's `output_shape` is its built shape)."""

    def __init__(
        self,
        read: Reader,
        default: Any = REQUIRED,
        *,
        saved: bool = True,
        dump: Callable[[Any], Any] | None = None,
        name: str = "",
    ) -> None:
        self.read = read
        self.default = default
        self.saved = saved
        self.dump = dump
        self.name = name
        self.attr = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.attr = name
        self.name = self.name or name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> Key[T]: ...

    @overload
    def __get__(self, obj: object, owner: type | None = None) -> T: ...

    def __get__(self, obj: object | None, owner: type | None = None) -> Key[T] | T:
        # A non-data descriptor: once set, a value sits in the instance's __dict__ and is read
        # as a plain attribute (no call on the hot paths: a step, a forward pass). This runs
        # only for the class, or for an instance whose key is not set yet.
        if obj is None:
            return self
        modules = obj.__dict__.get("_modules")  # a torch module's submodule (a wrapped layer)
        if modules is not None and self.attr in modules:
            value: T = modules[self.attr]
            return value
        raise AttributeError(self.attr)

    def default_for(self, cls: type) -> Any:
        return self.default.of_class(cls) if isinstance(self.default, Derived) else self.default

    def read_from(self, cls: type, config: Mapping[str, Any], loc: Loc) -> T:
        default = self.default_for(cls)
        if default is REQUIRED:
            value: T = self.read(config, self.name, loc)
        else:
            value = self.read(config, self.name, loc, default)
        return value


class DeclaredKeys:
    """The keys machinery of a class configured by declared `Key`s: collecting them, reading a
    config's values, setting them and writing the saved ones back. `Declared` adds the
    constructor, `from_config` and `get_config`; a family whose constructor and config take
    more (layers: a name, trainable) builds its own on this."""

    declared_keys: ClassVar[dict[str, Key[Any]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        keys: dict[str, Key[Any]] = {}
        for klass in reversed(cls.__mro__):
            for attribute, value in vars(klass).items():
                if isinstance(value, Key):
                    keys[value.name] = value
                elif attribute in keys:  # a plain attribute in a subclass: no longer a key
                    del keys[attribute]
        cls.declared_keys = keys

    def _set_declared(self, values: Mapping[str, Any]) -> None:
        """Set each declared key from `values` or its default; an undeclared or missing one is a
        programming error (configs are checked by `from_config` before this)."""
        keys = self.declared_keys
        unknown = set(values) - set(keys)
        if unknown:
            raise TypeError(f"unknown {type(self).__name__} arguments {sorted(unknown)}")
        for name, key in keys.items():
            value = values[name] if name in values else key.default_for(type(self))
            if value is REQUIRED:
                raise TypeError(f"{type(self).__name__} needs {name}")
            setattr(self, key.attr, value)

    def __post_init__(self) -> None:
        """Derived state, once every key is set."""

    def _value(self, name: str) -> Any:
        """The value of a key that subclasses declare (each where Keras's order puts it)."""
        return self.__dict__[self.declared_keys[name].attr]

    @classmethod
    def read_values(cls, config: Mapping[str, Any], loc: Loc) -> dict[str, Any]:
        """The declared keys' values from `config`, which may hold other keys too."""
        values = {name: key.read_from(cls, config, loc) for name, key in cls.declared_keys.items()}
        cls._validate(values, loc)
        return values

    @classmethod
    def _validate(cls, values: dict[str, Any], loc: Loc) -> None:
        """Checks across keys, after each key was read."""

    def declared_config(self) -> dict[str, Any]:
        """The saved keys' values, in declaration order, as a config writes them."""
        config: dict[str, Any] = {}
        for name, key in self.declared_keys.items():
            if key.saved:
                value = getattr(self, key.attr)
                config[name] = value if key.dump is None else key.dump(value)
        return config


class Declared(DeclaredKeys):
    """A class configured by its declared `Key`s (see the module docstring)."""

    def __init__(self, **values: Any) -> None:
        self._set_declared(values)
        self.__post_init__()

    @classmethod
    def config_keys(cls) -> tuple[str, ...]:
        """The keys a config may hold."""
        return tuple(cls.declared_keys)

    @classmethod
    def read_config(cls, config: Mapping[str, Any], loc: Loc) -> dict[str, Any]:
        """The keyword arguments `config` gives (each key read, checked, or defaulted); a key
        not among `config_keys` is a ConfigError."""
        known_keys(config, cls.config_keys(), loc)
        return cls.read_values(config, loc)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], loc: Loc) -> Self:
        return cls(**cls.read_config(config, loc))

    def get_config(self) -> dict[str, Any]:
        return self.declared_config()


# -- keys of the common kinds --------------------------------------------------------------------
def _number_as_given(
    config: Mapping[str, Any], key: str, loc: Loc, *default: Any, **bounds: Any
) -> Any:
    """A number checked as `get_float` does, returned as given (an int stays an int: Keras echoes
    configs as given)."""
    value = get_float(config, key, loc, *default, **bounds)
    raw = config[key] if key in config else (default[0] if default else value)
    return raw if isinstance(raw, int) and not isinstance(raw, bool) else value


def number(
    default: Any = REQUIRED,
    *,
    min_value: float | None = None,
    max_value: float | None = None,
    min_exclusive: bool = False,
    keep_int: bool = False,
    saved: bool = True,
) -> Key[float]:
    """A finite number (a float, or as given with `keep_int`) within the bounds."""
    read = _number_as_given if keep_int else get_float
    bounds: dict[str, Any] = {
        "min_value": min_value,
        "max_value": max_value,
        "min_exclusive": min_exclusive,
    }
    return Key(functools.partial(read, **bounds), default, saved=saved)


def number_or_none(
    default: float | None = None,
    *,
    min_value: float | None = None,
    max_value: float | None = None,
    min_exclusive: bool = False,
    keep_int: bool = False,
    saved: bool = True,
) -> Key[float | None]:
    """A number within the bounds, or null."""
    read = _number_as_given if keep_int else get_float
    bounds: dict[str, Any] = {
        "min_value": min_value,
        "max_value": max_value,
        "min_exclusive": min_exclusive,
    }
    return Key(functools.partial(read, allow_none=True, **bounds), default, saved=saved)


def integer(
    default: Any = REQUIRED,
    *,
    min_value: int | None = None,
    max_value: int | None = None,
    saved: bool = True,
) -> Key[int]:
    return Key(
        functools.partial(get_int, min_value=min_value, max_value=max_value), default, saved=saved
    )


def integer_or_none(
    default: int | None = None,
    *,
    min_value: int | None = None,
    max_value: int | None = None,
    saved: bool = True,
) -> Key[int | None]:
    read = functools.partial(get_int, min_value=min_value, max_value=max_value, allow_none=True)
    return Key(read, default, saved=saved)


def boolean(default: Any = REQUIRED, *, saved: bool = True) -> Key[bool]:
    return Key(get_bool, default, saved=saved)


def string(
    default: Any = REQUIRED, *, choices: Sequence[str] | None = None, saved: bool = True
) -> Key[str]:
    """A string (one of `choices` when given)."""
    return Key(functools.partial(get_str, choices=choices), default, saved=saved)


def string_or_none(default: str | None = None, *, saved: bool = True) -> Key[str | None]:
    return Key(functools.partial(get_str, allow_none=True), default, saved=saved)


def anything(default: Any = None, *, saved: bool = True) -> Key[Any]:
    """A value taken as given (e.g. an initializer's seed, which the engine does not use)."""

    def read(config: Mapping[str, Any], key: str, loc: Loc, default: Any = None) -> Any:
        return config.get(key, default)

    return Key(read, default, saved=saved)


def must_be_null(
    message: str = "is not supported yet; leave it null", *, saved: bool = False
) -> Key[None]:
    """A key Keras writes that only its null value is supported for."""

    def read(config: Mapping[str, Any], key: str, loc: Loc, default: Any = None) -> None:
        if config.get(key) is not None:
            raise ConfigError((*loc, key), message)

    return Key(read, None, saved=saved)
