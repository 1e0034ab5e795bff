"""The CALLBACKS registry: declarative callbacks built from `{class_name, config}`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from app.engine.config.errors import Loc
from app.engine.config.registry import Registry

if TYPE_CHECKING:
    from app.engine.callbacks.base import Callback

CALLBACKS: Registry[Callback] = Registry("callback")


def get(identifier: Any, loc: Loc) -> Callback:
    cls, config, cloc = CALLBACKS.parse(identifier, loc)
    return cls.from_config(config, cloc)  # type: ignore[attr-defined]
