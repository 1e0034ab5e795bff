"""What regularizers and constraints (the per-weight options of a layer) share: built from a
Keras config with only their own keys, remembering where that config was read (for errors
found later, when the weight is created), and written back as Keras's
`serialize_keras_object` writes them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, TypeVar

from app.engine.config.errors import Loc
from app.engine.config.registry import Registry, known_keys

W = TypeVar("W", bound="WeightOption")


class WeightOption:
    """A Keras object configured by `keys`, put on a layer's weight (or its output)."""

    class_name: ClassVar[str]
    #: The Keras module its serialized form names.
    module: ClassVar[str]
    #: Config keys the class takes.
    keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, loc: Loc) -> None:
        #: Where the config was read from, for errors found when a weight is created.
        self.loc = loc

    @classmethod
    def from_config(cls: type[W], config: Mapping[str, Any], loc: Loc) -> W:
        known_keys(config, cls.keys, loc)
        return cls._read(config, loc)

    @classmethod
    def _read(cls: type[W], config: Mapping[str, Any], loc: Loc) -> W:
        return cls(loc)

    def get_config(self) -> dict[str, Any]:
        return {}

    def serialize(self) -> dict[str, Any]:
        """The object as Keras's `serialize_keras_object` writes it."""
        return {
            "module": self.module,
            "class_name": self.class_name,
            "config": self.get_config(),
            "registered_name": None,
        }

    def check_weight(self, shape: tuple[int, ...]) -> None:
        """Refuse a weight this option cannot take (a ConfigError at its config)."""


def get_option(registry: Registry[W], identifier: Any, loc: Loc) -> W | None:
    """An option from a name, a `{class_name, config}` object (Keras's own module only), or
    None (no option)."""
    if identifier is None:
        return None
    cls, config, cloc = registry.parse(identifier, loc)
    return cls.from_config(config, cloc)
