"""Keras 3 optimizers on torch: the OPTIMIZERS registry and `get`, which resolves a compile
spec's optimizer. The Optimizer base (slots, clipping, weight decay, checkpoint state) lives in
`app.engine.optimizer_base` and the update rules in `app.engine.optimizer_rules`; both are
re-exported here. A new optimizer is an Optimizer subclass there, registered below under Keras's
class name (looked up in any case, as Keras does).
"""

from __future__ import annotations

from typing import Any

from app.engine.errors import Loc
from app.engine.optimizer_base import Optimizer
from app.engine.optimizer_rules import SGD, Adam, RMSprop
from app.engine.registry import Registry

__all__ = ["OPTIMIZERS", "SGD", "Adam", "Optimizer", "RMSprop", "get"]

OPTIMIZERS: Registry[Optimizer] = Registry("optimizer", case_insensitive=True)
OPTIMIZERS.register("SGD")(SGD)
OPTIMIZERS.register("RMSprop")(RMSprop)
OPTIMIZERS.register("Adam")(Adam)


def get(identifier: Any, loc: Loc) -> Optimizer:
    """An optimizer from a name (any case, as Keras) or a `{class_name, config}` object."""
    if isinstance(identifier, Optimizer):
        return identifier
    cls, config, cloc = OPTIMIZERS.parse(identifier, loc)
    return cls.from_config(config, cloc)
