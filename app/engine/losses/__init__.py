"""Keras 3 losses on torch: the LOSSES registry, string resolution (`get`) and every loss.

The Loss base lives in `base`, Keras's shape, reduction and label-check helpers in `reduction`,
and the losses one module per kind: `crossentropy`, `regression`, `probabilistic`, `hinge`,
`segmentation`, `sequence` (CTC) and `metric_learning` (Circle). Importing this package imports
each of them, which registers their losses. A new loss is a subclass with `fn`, `_check` and, if it
has arguments, their declared keys (`app.engine.config.declared`), registered (`LOSSES.add`) under
its class name, Keras's function name and aliases, in the module of its kind (imported below).
"""

from __future__ import annotations

from typing import Any

from app.engine.config.errors import ConfigError, Loc
from app.engine.losses.base import EPSILON as EPSILON
from app.engine.losses.base import LOSSES as LOSSES
from app.engine.losses.base import REDUCTIONS as REDUCTIONS
from app.engine.losses.base import Loss as Loss
from app.engine.losses.crossentropy import (
    BinaryCrossentropy as BinaryCrossentropy,
)
from app.engine.losses.crossentropy import (
    CategoricalCrossentropy as CategoricalCrossentropy,
)
from app.engine.losses.crossentropy import (
    SparseCategoricalCrossentropy as SparseCategoricalCrossentropy,
)
from app.engine.losses.hinge import CategoricalHinge as CategoricalHinge
from app.engine.losses.hinge import Hinge as Hinge
from app.engine.losses.hinge import SquaredHinge as SquaredHinge
from app.engine.losses.metric_learning import Circle as Circle
from app.engine.losses.probabilistic import BinaryFocalCrossentropy as BinaryFocalCrossentropy
from app.engine.losses.probabilistic import (
    CategoricalFocalCrossentropy as CategoricalFocalCrossentropy,
)
from app.engine.losses.probabilistic import KLDivergence as KLDivergence
from app.engine.losses.probabilistic import Poisson as Poisson
from app.engine.losses.reduction import Shape, pick_by_shape
from app.engine.losses.reduction import divide_no_nan as divide_no_nan
from app.engine.losses.reduction import reduce_weighted_values as reduce_weighted_values
from app.engine.losses.reduction import (
    squeeze_or_expand_to_same_rank as squeeze_or_expand_to_same_rank,
)
from app.engine.losses.regression import CosineSimilarity as CosineSimilarity
from app.engine.losses.regression import Huber as Huber
from app.engine.losses.regression import LogCosh as LogCosh
from app.engine.losses.regression import MeanAbsoluteError as MeanAbsoluteError
from app.engine.losses.regression import (
    MeanAbsolutePercentageError as MeanAbsolutePercentageError,
)
from app.engine.losses.regression import MeanSquaredError as MeanSquaredError
from app.engine.losses.regression import (
    MeanSquaredLogarithmicError as MeanSquaredLogarithmicError,
)
from app.engine.losses.segmentation import Dice as Dice
from app.engine.losses.segmentation import Tversky as Tversky
from app.engine.losses.sequence import CTC as CTC

_CROSSENTROPY_STRINGS = ("crossentropy", "ce")


def get(
    identifier: Any,
    loc: Loc,
    *,
    y_true_shape: Shape | None = None,
    y_pred_shape: Shape | None = None,
) -> Loss:
    """Resolve a loss as Keras's compile does. A string that names a function or alias (not a
    class) becomes the loss's name, as Keras's wrapper does: "mse" is named "mse"."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _CROSSENTROPY_STRINGS:
        if y_true_shape is None or y_pred_shape is None:
            raise ConfigError(
                loc, f"{identifier!r} is chosen from the label and output shapes, not known here"
            )
        choices = (BinaryCrossentropy, SparseCategoricalCrossentropy, CategoricalCrossentropy)
        cls: type[Loss] = pick_by_shape(tuple(y_true_shape), tuple(y_pred_shape), choices)
        return cls.from_config({"name": identifier}, loc)
    found, config, cloc = LOSSES.parse(identifier, loc)
    loss = found.from_config(config, cloc)
    if isinstance(identifier, str) and identifier != LOSSES.canonical_name(found):
        loss.name = identifier
    return loss
