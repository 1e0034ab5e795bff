"""Keras 3 optimizers on torch: the OPTIMIZERS registry and `get`, which resolves a compile
spec's optimizer. The Optimizer base (slots, clipping, weight decay, checkpoint state) lives in
`base`, the optimizer-wide options (loss scaling, clipping, EMA, accumulation) in `options`, the
learning-rate schedules in `schedules`, and the update rules one module per family: `sgd`, `adam`
(Adam, AdamW, Adamax, Nadam), `adaptive` (RMSprop, Adagrad, Adadelta), `lion` and `tensorwise`
(Ftrl, Adafactor, Lamb); all are re-exported here. A new optimizer is an Optimizer subclass in the
module of its family, registered below under Keras's class name (looked up in any case,
as Keras does; Lamb only in a `{class_name, config}` object, as in Keras).
"""

from __future__ import annotations

from typing import Any

from app.engine.config.errors import ConfigError, Loc
from app.engine.config.registry import Registry
from app.engine.optimizers.adam import Adam, Adamax, AdamW, Nadam
from app.engine.optimizers.adaptive import Adadelta, Adagrad, RMSprop
from app.engine.optimizers.base import Optimizer
from app.engine.optimizers.lion import Lion
from app.engine.optimizers.sgd import SGD
from app.engine.optimizers.tensorwise import Adafactor, Ftrl, Lamb

__all__ = [
    "OPTIMIZERS",
    "SGD",
    "Adadelta",
    "Adafactor",
    "Adagrad",
    "Adam",
    "AdamW",
    "Adamax",
    "Ftrl",
    "Lamb",
    "Lion",
    "Nadam",
    "Optimizer",
    "RMSprop",
    "get",
]

OPTIMIZERS: Registry[Optimizer] = Registry("optimizer", case_insensitive=True)
_ALL = (SGD, RMSprop, Adam, AdamW, Adagrad, Adadelta, Adamax, Nadam, Lion, Ftrl, Adafactor, Lamb)
for _optimizer in _ALL:
    OPTIMIZERS.add()(_optimizer)

# Keras exports Lamb but leaves it out of its string lookup: only {"class_name": "Lamb"} works.
_NO_STRING_ID = (Lamb,)


def get(identifier: Any, loc: Loc) -> Optimizer:
    """An optimizer from a name (any case, as Keras) or a `{class_name, config}` object."""
    if isinstance(identifier, Optimizer):
        return identifier
    cls, config, cloc = OPTIMIZERS.parse(identifier, loc)
    if isinstance(identifier, str) and cls in _NO_STRING_ID:
        raise ConfigError(
            loc,
            f"Keras has no string id {identifier!r}; write "
            f'{{"class_name": "{cls.__name__}"}} instead',
        )
    return cls.from_config(config, cloc)
