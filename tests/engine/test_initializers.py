"""Every initializer by class and snake_case name: Keras reads our canonical config back as the
same initializer, deterministic ones equal Keras's values, and random ones have Keras's
distribution (checked by their limits and moments on a large draw)."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest
import torch

from app.engine.config.errors import ConfigError
from app.engine.config.registry import to_snake_case
from app.engine.weights import initializers

SHAPE = (300, 200)
DETERMINISTIC = ("Zeros", "Ones", "Constant", "IdentityInitializer")


@pytest.mark.parametrize("name", initializers.initializer_names())
def test_every_initializer_round_trips_through_keras(keras: ModuleType, name: str) -> None:
    config, init = initializers.get(name, ("init",))
    again, _ = initializers.get(to_snake_case(name), ("init",))
    assert again == config
    theirs = keras.initializers.deserialize({"class_name": config["class_name"],
                                             "config": config["config"]})  # fmt: skip
    ours = init(SHAPE, torch.Generator().manual_seed(0)).numpy()
    want = np.asarray(theirs(SHAPE))
    assert ours.shape == want.shape and ours.dtype == np.float32
    if name in DETERMINISTIC:
        np.testing.assert_array_equal(ours, want)
    else:  # same distribution: equal range and moments within sampling error
        assert abs(ours.std() - want.std()) < 0.05 * want.std() + 1e-6
        assert abs(ours.mean() - want.mean()) < 0.05 * want.std() + 1e-6
        assert ours.max() <= max(want.max(), 0) * 1.5 + 1e-6


def test_identity_with_a_gain_and_its_shape_rule(keras: ModuleType) -> None:
    _, init = initializers.get({"class_name": "Identity", "config": {"gain": 2.5}}, ("i",))
    want = keras.initializers.Identity(gain=2.5)((3, 4))
    np.testing.assert_array_equal(init((3, 4), torch.Generator()).numpy(), np.asarray(want))
    with pytest.raises(ConfigError, match="2-D"):
        init((2, 3, 4), torch.Generator())
