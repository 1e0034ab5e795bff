"""Fitting one model here and in Keras 3 from the same weights, and comparing the two.

`sequential` writes a Sequential config from (class_name, config) pairs (`assert_refused`: one
we refuse, naming the field); `keras_and_ours` builds and compiles it in both (ours takes
Keras's initial weights); `assert_same_fit` compares the History values and the final weights,
`assert_same_evaluate` the evaluation results."""

from __future__ import annotations

import copy
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from app.engine.compile import CompileSpec
from app.engine.errors import ConfigError
from app.engine.models import Model
from app.engine.trainer import Trainer
from tests.support.keras_json import keras_json


def sequential(layers: list[tuple[str, dict[str, Any]]], shape: list[Any]) -> dict[str, Any]:
    """A Sequential config named "m" with an InputLayer of batch shape `shape`."""
    entries = [{"class_name": "InputLayer", "config": {"batch_shape": shape}}]
    entries += [{"class_name": c, "config": k} for c, k in layers]
    return {"class_name": "Sequential", "config": {"name": "m", "layers": entries}}


def assert_refused(
    layer: tuple[str, dict[str, Any]], shape: list[Any], loc: tuple[Any, ...], text: str
) -> None:
    """A Sequential of `layer` alone is refused with a ConfigError at the layer's config + `loc`
    whose message contains `text`."""
    with pytest.raises(ConfigError) as info:
        Model.from_config(sequential([layer], shape), seed=0)
    assert info.value.loc == ("config", "layers", 1, "config", *loc)
    assert text in info.value.message


def keras_and_ours(
    keras: ModuleType,
    config: dict[str, Any],
    compile_cfg: dict[str, Any],
    *,
    keras_seed: int = 0,
) -> tuple[Any, Trainer]:
    """The Keras model and our trainer, both compiled with `compile_cfg`, with Keras's weights
    (drawn after `keras.utils.set_random_seed(keras_seed)`, so every run compares the same
    case)."""
    keras.utils.set_random_seed(keras_seed)
    km = keras.models.model_from_json(keras_json(config))
    km.compile(
        # Keras deserializes a schedule in its optimizer's config in place: give it a copy.
        optimizer=keras.optimizers.get(copy.deepcopy(compile_cfg["optimizer"])),
        loss=compile_cfg["loss"],
        metrics=compile_cfg.get("metrics"),
        weighted_metrics=compile_cfg.get("weighted_metrics"),
    )
    ours = Model.from_config(config, seed=0)
    ours.set_weights(km.get_weights())
    return km, Trainer(ours, CompileSpec.parse(compile_cfg), device=None)


def assert_same_fit(
    history: dict[str, list[float]],
    keras_history: dict[str, list[float]],
    trainer: Trainer,
    km: Any,
    *,
    rtol: float,
    atol: float,
    weights_atol: float | None = None,
) -> None:
    """The same History keys and values, and the same final weights (to `weights_atol` where
    given, e.g. from `keras_drift`)."""
    assert sorted(history) == sorted(keras_history)
    for key, theirs in keras_history.items():
        np.testing.assert_allclose(history[key], theirs, rtol=rtol, atol=atol, err_msg=key)
    w_atol = atol if weights_atol is None else max(atol, weights_atol)
    for ours, theirs in zip(trainer.model.get_weights(), km.get_weights(), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=w_atol)


def keras_drift(
    run: Callable[[list[np.ndarray]], list[np.ndarray]], weights: list[np.ndarray]
) -> float:
    """Keras's own sensitivity: the largest change in the weights a Keras fit (`run`, from the
    given initial weights to its final ones) ends with when every initial weight moves by one
    ulp. Roundoff that differs between two correct implementations moves the result about as
    much, so a multiple of this is a tolerance derived from the computation."""
    a = run(weights)
    b = run([np.nextafter(w, np.float32(np.inf)).astype(w.dtype) for w in weights])
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True))


def assert_same_evaluate(
    trainer: Trainer,
    km: Any,
    x: np.ndarray,
    y: np.ndarray,
    *,
    batch_size: int,
    rtol: float,
    atol: float,
) -> None:
    """Every value of Keras's evaluate, ours the same."""
    ours = trainer.evaluate(x, y, batch_size=batch_size)
    theirs = km.evaluate(x, y, batch_size=batch_size, return_dict=True, verbose=0)
    for key, value in theirs.items():
        np.testing.assert_allclose(ours[key], value, rtol=rtol, atol=atol, err_msg=key)
