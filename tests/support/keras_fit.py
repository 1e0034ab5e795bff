"""Fitting one model here and in Keras 3 from the same weights, and comparing the two.

`sequential` writes a Sequential config from (class_name, config) pairs (`assert_refused`: one
we refuse, naming the field); `keras_and_ours` builds and compiles it in both (ours takes
Keras's initial weights); `assert_same_fit` compares the History values and the final weights
(to an eps bound, or to a multiple of Keras's own one-ulp drift, `measured_drift`),
`assert_same_evaluate` the evaluation results. Tolerances follow CONTRIBUTING.md."""

from __future__ import annotations

import copy
from collections.abc import Callable, Hashable, Mapping
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from app.engine.config.errors import ConfigError
from app.engine.models.model import Model
from app.engine.training.compile import CompileSpec
from app.engine.training.fit_args import FitArgs
from app.engine.training.trainer import Trainer
from tests.support.keras_json import keras_json
from tests.support.tolerance import (
    Tolerance,
    assert_close,
    assert_within_drift,
    drift_tolerance,
    keras_drift,
    pool_weight_drifts,
)


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


After = Callable[[Any], dict[str, Any]]
# Drifts already measured, by the key a test gave `measured_drift`: one Keras fit shared by
# several tests (parametrized on our side only) is run again once, not once per test.
_MEASURED: dict[Hashable, dict[str, float]] = {}


def fit_results(
    keras_history: Mapping[str, list[float]], km: Any, after: After | None = None
) -> dict[str, Any]:
    """A Keras fit's results by the names `assert_same_fit` and `measured_drift` use: "history KEY",
    "weight I", and whatever `after(km)` adds (e.g. {"predict": km.predict(x)})."""
    return {**{f"history {k}": v for k, v in keras_history.items()},
            **{f"weight {i}": w for i, w in enumerate(km.get_weights())},
            **(after(km) if after is not None else {})}  # fmt: skip


def measured_drift(
    keras: ModuleType,
    config: dict[str, Any],
    compile_cfg: dict[str, Any],
    *,
    fit: Callable[[Any], Any],
    keras_history: Mapping[str, list[float]],
    km: Any,
    after: After | None = None,
    keras_seed: int = 0,
    key: Hashable | None = None,
) -> dict[str, float]:
    """Keras's one-ulp drift of each result of a fit already run on `km` (built by
    `keras_and_ours` with these arguments, then `fit(km)`, which returned `keras_history`): the
    same fit again, the model built and compiled the same way (the same seed, so the same seeded
    layers) from its initial weights moved by one ulp. Named as `fit_results` names them. Where
    `key` is given, the drift is measured once per test process for that key (several tests of
    one Keras fit give the same key)."""
    if key is not None and key in _MEASURED:
        return _MEASURED[key]

    def run(weights: list[np.ndarray]) -> dict[str, Any]:
        other, _ = keras_and_ours(keras, config, compile_cfg, keras_seed=keras_seed)
        other.set_weights(weights)
        return fit_results(fit(other).history, other, after)

    initial, _ = keras_and_ours(keras, config, compile_cfg, keras_seed=keras_seed)
    drift = keras_drift(run, initial.get_weights(),
                        baseline=fit_results(keras_history, km, after))  # fmt: skip
    assert isinstance(drift, dict)
    if key is not None:
        _MEASURED[key] = drift
    return drift


def _tolerance(
    name: str, theirs: Any, floor: Tolerance | None, drift: Mapping[str, float] | None
) -> Tolerance:
    """`drift_tolerance` of the value's measured drift, or `floor` (an eps bound): one of them."""
    assert (floor is None) != (drift is None), "an eps bound (floor) or a measured drift"
    return floor if drift is None else drift_tolerance(pool_weight_drifts(drift)[name], theirs)


def assert_same_fit(
    history: Mapping[str, list[float]],
    keras_history: Mapping[str, list[float]],
    trainer: Trainer,
    km: Any,
    *,
    floor: Tolerance | None = None,
    drift: Mapping[str, float] | None = None,
) -> None:
    """The same History keys and values, and the same final weights: each to a multiple of
    Keras's one-ulp `drift` of it (`measured_drift`; `drift_tolerance`: never tighter than a few
    ulps of its magnitude), or, where no drift can be measured, to `floor` (an eps bound)."""
    assert sorted(history) == sorted(keras_history)
    for key, theirs in keras_history.items():
        name = f"history {key}"
        assert_close(history[key], theirs, _tolerance(name, theirs, floor, drift), what=name)
    ours_w = trainer.model.get_weights()
    for i, (ours, theirs) in enumerate(zip(ours_w, km.get_weights(), strict=True)):
        name = f"weight {i}"
        assert_close(ours, theirs, _tolerance(name, theirs, floor, drift), what=name)


def assert_split_fit_matches_keras(
    keras: ModuleType,
    config: dict[str, Any],
    compile_cfg: dict[str, Any],
    x: np.ndarray,
    y: np.ndarray,
    *,
    batch_size: int,
    epochs: int,
    validation_split: float,
) -> None:
    """The same unshuffled fit with a validation split in Keras and ours from the same weights:
    its History, weights and predictions held to Keras's measured one-ulp drift."""
    km, trainer = keras_and_ours(keras, config, compile_cfg)

    def fit(m: Any) -> Any:
        return m.fit(x, y, batch_size=batch_size, epochs=epochs, shuffle=False,
                     validation_split=validation_split, verbose=0)  # fmt: skip

    kh = fit(km)
    args = FitArgs(batch_size=batch_size, epochs=epochs, shuffle=False,
                   validation_split=validation_split)  # fmt: skip
    history = trainer.fit(x, y, args=args)
    drift = measured_drift(keras, config, compile_cfg, fit=fit, keras_history=kh.history, km=km,
                           after=lambda m: {"predict": m.predict(x, verbose=0)})  # fmt: skip
    assert_same_fit(history.history, kh.history, trainer, km, drift=drift)
    theirs = km.predict(x, verbose=0)
    assert_close(trainer.predict(x), theirs, drift_tolerance(drift["predict"], theirs),
                 what="predict")  # fmt: skip


def keras_evaluate(x: np.ndarray, y: np.ndarray, *, batch_size: int) -> After:
    """An `after` for `measured_drift`: Keras's evaluate results, named as
    `assert_same_evaluate` names them."""

    def after(km: Any) -> dict[str, Any]:
        theirs = km.evaluate(x, y, batch_size=batch_size, return_dict=True, verbose=0)
        return {f"evaluate {k}": v for k, v in theirs.items()}

    return after


def assert_same_evaluate(
    trainer: Trainer,
    km: Any,
    x: np.ndarray,
    y: np.ndarray,
    *,
    batch_size: int,
    floor: Tolerance | None = None,
    drift: Mapping[str, float] | None = None,
) -> None:
    """Every value of Keras's evaluate, ours the same: to the multiple of the measured `drift` of
    each (`keras_evaluate` as `measured_drift`'s `after`), or to `floor`."""
    ours = trainer.evaluate(x, y, batch_size=batch_size)
    theirs = keras_evaluate(x, y, batch_size=batch_size)(km)
    assert sorted(f"evaluate {k}" for k in ours) == sorted(theirs)
    for name, value in theirs.items():
        tol = _tolerance(name, value, floor, drift)
        assert_close(ours[name.removeprefix("evaluate ")], value, tol, what=name)


def named_results(history: Mapping[str, Any], weights: list[Any], **extra: Any) -> dict[str, Any]:
    """A fit's results by the names `fit_results` gives them: its History values, its final
    weights and `extra` (evaluate, predict)."""
    return {**{f"history {k}": v for k, v in history.items()},
            **{f"weight {i}": w for i, w in enumerate(weights)}, **extra}  # fmt: skip


def assert_fit_within_drift(
    keras: ModuleType,
    km: Any,
    ours: Mapping[str, Any],
    theirs: Mapping[str, Any],
    *,
    initial: list[np.ndarray],
    replay: Callable[[Any], dict[str, Any]],
) -> None:
    """Our fit's results as Keras's (`theirs`, from `km` compiled and fit from `initial`; both
    named as `named_results` names them), each to a multiple of Keras's own drift: `replay` runs
    Keras's side again on a copy of `km` (the same graph, compiled as `km` was, its weights moved
    by one ulp from `initial`) and returns its results."""
    compiled = km.get_compile_config()

    def again(weights: list[np.ndarray]) -> dict[str, Any]:
        other = keras.models.clone_model(km)
        other.compile_from_config(compiled)
        other.set_weights(weights)
        return replay(other)

    drift = keras_drift(again, initial, baseline=theirs)
    assert isinstance(drift, dict)
    assert_within_drift(ours, theirs, drift)
