"""The checks every loss test module runs on its own cases: a bad config names its field, and
`check_labels` accepts the labels a loss can score and refuses the others with a DataError that
says what it received."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from app.engine import losses
from app.engine.config.errors import ConfigError, DataError


def assert_bad_config_names(identifier: Any, loc: tuple[Any, ...]) -> None:
    """`losses.get(identifier)` at ("l",) refuses it with a ConfigError at `loc`."""
    with pytest.raises(ConfigError) as err:
        losses.get(identifier, ("l",))
    assert err.value.loc == loc


def assert_check_labels(
    identifier: Any, y: np.ndarray, out_shape: tuple[int | None, ...], error: str | None
) -> None:
    """Labels `y` for outputs of `out_shape` pass the loss's check (`error` None) or are refused
    at ("fit", "y") with a message containing `error`."""
    loss = losses.get(identifier, ("loss",))
    if error is None:
        loss.check_labels(y, out_shape, ("fit", "y"))
        return
    with pytest.raises(DataError) as err:
        loss.check_labels(y, out_shape, ("fit", "y"))
    assert err.value.loc == ("fit", "y")
    assert error in err.value.message
    assert "received" in err.value.message or "do not fit" in err.value.message
