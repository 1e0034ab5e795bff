"""What regularizers and constraints (the per-weight options of a layer) share: built from a
Keras config with only their own keys, remembering where that config was read (for errors
found later, when the weight is created), and written back as Keras's
`serialize_keras_object` writes them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Self, TypeVar

from app.engine.config.declared import Declared
from app.engine.config.errors import Loc
from app.engine.config.registry import Registry

W = TypeVar("W", bound="WeightOption")


class WeightOption(Declared):
    """A Keras object configured by its declared keys, put on a layer's weight (or its output)."""

    #: The Keras module its serialized form names.
    module: ClassVar[str]

    def __init__(self, loc: Loc = (), **values: Any) -> None:
        #: Where the config was read from, for errors found when a weight is created.
        self.loc = loc
        super().__init__(**values)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], loc: Loc) -> Self:
        return cls(loc, **cls.read_config(config, loc))

    def serialize(self) -> dict[str, Any]:
        """The object as Keras's `serialize_keras_object` writes it."""
        return {
            "module": self.module,
            "class_name": type(self).__name__,
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
