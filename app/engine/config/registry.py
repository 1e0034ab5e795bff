"""Closed, named registries of configurable engine objects (one per family).

A registry maps names (and explicit aliases) to classes. `get` accepts a name, a Keras-style
`{"class_name", "config"}` object, or an instance. Nothing is ever resolved by import path: a
`module` other than Keras's own is refused, so a config cannot make the engine import code.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, Protocol, TypeVar

from app.engine.config.errors import ConfigError, Loc


class Configurable(Protocol):
    def get_config(self) -> dict[str, Any]: ...


T = TypeVar("T")

_SNAKE_1 = re.compile(r"(.)([A-Z][a-z]+)")
_SNAKE_2 = re.compile(r"([a-z])([A-Z])")  # Keras's: a digit is not split from a capital


def to_snake_case(name: str) -> str:
    """Keras's `to_snake_case`: `BinaryAccuracy` -> `binary_accuracy`."""
    return _SNAKE_2.sub(r"\1_\2", _SNAKE_1.sub(r"\1_\2", name)).lower()


def check_keras_module(spec: Mapping[str, Any], loc: Loc) -> None:
    """Accept `module`/`registered_name` only when they name Keras's own objects."""
    module = spec.get("module")
    if module is not None and (
        not isinstance(module, str) or not (module == "keras" or module.startswith("keras."))
    ):
        raise ConfigError(
            (*loc, "module"),
            f"only Keras's own modules are accepted, got {module!r}; custom objects are not "
            "supported",
        )
    registered = spec.get("registered_name")
    class_name = spec.get("class_name")
    if registered not in (None, class_name) and not (
        isinstance(registered, str) and registered.rsplit(">", 1)[-1] == class_name
    ):
        raise ConfigError(
            (*loc, "registered_name"),
            f"custom registered objects are not supported, got {registered!r}",
        )


class Registry(Generic[T]):
    """A closed family of classes looked up by name."""

    def __init__(self, family: str, *, case_insensitive: bool = False) -> None:
        self.family = family
        self.case_insensitive = case_insensitive
        self._entries: dict[str, type[T]] = {}
        self._canonical: dict[type[T], str] = {}

    def _key(self, name: str) -> str:
        return name.lower() if self.case_insensitive else name

    def register(self, name: str, *aliases: str) -> Callable[[type[T]], type[T]]:
        def decorator(cls: type[T]) -> type[T]:
            for n in (name, *aliases):
                key = self._key(n)
                if key in self._entries:
                    raise RuntimeError(f"duplicate {self.family} name {n!r}")
                self._entries[key] = cls
            self._canonical[cls] = name
            return cls

        return decorator

    def add(self, *aliases: str) -> Callable[[type[T]], type[T]]:
        """Register a class under its own name (Keras's class name) and `aliases`."""

        def decorator(cls: type[T]) -> type[T]:
            return self.register(cls.__name__, *aliases)(cls)

        return decorator

    def names(self) -> list[str]:
        """Canonical names, one per registered class, sorted."""
        return sorted(self._canonical.values())

    def all_names(self) -> list[str]:
        return sorted(self._entries)

    def classes(self) -> list[type[T]]:
        return list(self._canonical)

    def canonical_name(self, cls: type[T]) -> str:
        return self._canonical[cls]

    def lookup(self, name: str, loc: Loc) -> type[T]:
        cls = self._entries.get(self._key(name))
        if cls is None:
            raise ConfigError(
                loc, f"unknown {self.family} {name!r}; expected one of {self._choices()}"
            )
        return cls

    def _choices(self, limit: int = 40) -> str:
        names = self.names()
        shown = ", ".join(names[:limit])
        return shown + (", ..." if len(names) > limit else "")

    def parse(self, identifier: Any, loc: Loc) -> tuple[type[T], dict[str, Any], Loc]:
        """Split an identifier into (class, config, location of the config)."""
        if isinstance(identifier, str):
            return self.lookup(identifier, loc), {}, loc
        if isinstance(identifier, Mapping):
            class_name = identifier.get("class_name")
            if not isinstance(class_name, str):
                raise ConfigError((*loc, "class_name"), f"a {self.family} needs a class_name")
            check_keras_module(identifier, loc)
            config = identifier.get("config", {})
            if config is None:
                config = {}
            if not isinstance(config, Mapping):
                raise ConfigError((*loc, "config"), "must be an object")
            cls = self.lookup(class_name, (*loc, "class_name"))
            return cls, dict(config), (*loc, "config")
        raise ConfigError(
            loc,
            f"a {self.family} is a name or a {{class_name, config}} object, "
            f"got {type(identifier).__name__}",
        )


def known_keys(
    config: Mapping[str, Any], allowed: Iterable[str], loc: Loc, *, ignored: Iterable[str] = ()
) -> dict[str, Any]:
    """Return `config` without ignored keys; an unknown key is a ConfigError naming it."""
    allowed_set = set(allowed)
    ignored_set = set(ignored)
    out: dict[str, Any] = {}
    for key, value in config.items():
        if key in ignored_set:
            continue
        if key not in allowed_set:
            raise ConfigError(
                (*loc, key), f"unknown argument; expected one of {sorted(allowed_set)}"
            )
        out[key] = value
    return out
