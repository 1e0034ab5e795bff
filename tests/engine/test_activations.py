"""Every activation name against Keras's own function, and the one Keras cannot use by name."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest
import torch

from app.engine.config.errors import ConfigError
from app.engine.layers import activations

_NOISE = np.random.default_rng(0).normal(scale=3.0, size=(4, 60))
X = np.concatenate([_NOISE, np.linspace(-2, 2, 80).reshape(4, 20)], axis=1).astype(np.float32)


@pytest.mark.parametrize("name", sorted(activations.ACTIVATIONS))
def test_every_activation_matches_keras(keras: ModuleType, name: str) -> None:
    canonical, fn = activations.get(name, ("activation",))
    assert canonical == name
    got = fn(torch.as_tensor(X)).numpy()
    want = np.asarray(keras.activations.get(name)(X))
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_activations_that_need_arguments_are_refused() -> None:
    with pytest.raises(ConfigError, match="needs arguments"):
        activations.get("threshold", ("activation",))
