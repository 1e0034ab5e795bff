"""Differential tests of fit, evaluate and predict against Keras 3 on its torch backend:
the same model, the same initial weights, the same data, shuffle off; every History value and
the final weights must agree to float32 precision."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from app.engine.models.model import Model
from app.engine.training.compile import CompileSpec
from app.engine.training.fit_args import FitArgs
from app.engine.training.trainer import Trainer
from tests.support import scenario
from tests.support.keras_json import keras_json
from tests.support.tolerance import assert_within_drift, keras_drift

# Tolerances (CONTRIBUTING.md): every value is held to a multiple of Keras's own drift, measured
# by running the Keras side once more from its initial weights moved by one ulp, never tighter
# than a few ulps of the values. A worst-case eps bound of these fits (steps x one step's
# roundings) would allow per mille; the drift is what roundoff actually does to them.
KerasRun = Callable[[Any], dict[str, Any]]


def _layers(spec: list[tuple[str, dict[str, Any]]], input_dim: int) -> dict[str, Any]:
    layers = [{"class_name": "InputLayer", "config": {"batch_shape": [None, input_dim]}}]
    layers += [{"class_name": c, "config": cfg} for c, cfg in spec]
    return {"class_name": "Sequential", "config": {"name": "m", "layers": layers}}


def _keras_model(keras: ModuleType, config: dict[str, Any]) -> Any:
    return keras.models.model_from_json(keras_json(config))


def _keras_compiled(keras: ModuleType, config: dict[str, Any], compile_cfg: dict[str, Any]) -> Any:
    km = _keras_model(keras, config)
    km.compile(
        optimizer=keras.optimizers.get(compile_cfg["optimizer"]),
        loss=compile_cfg["loss"],
        metrics=compile_cfg.get("metrics"),
        weighted_metrics=compile_cfg.get("weighted_metrics"),
    )
    return km


def _pair(
    keras: ModuleType, config: dict[str, Any], compile_cfg: dict[str, Any]
) -> tuple[Any, Trainer]:
    km = _keras_compiled(keras, config, compile_cfg)
    ours = Model.from_config(config, seed=0)
    ours.set_weights(km.get_weights())
    trainer = Trainer(ours, CompileSpec.parse(compile_cfg), device=None)
    return km, trainer


def _results(history: dict[str, Any], weights: list[Any], **extra: Any) -> dict[str, Any]:
    """A fit's results by name: its History values, its final weights and `extra` (evaluate,
    predict)."""
    return {**{f"history {k}": v for k, v in history.items()},
            **{f"weight {i}": w for i, w in enumerate(weights)}, **extra}  # fmt: skip


def _assert_as_keras(
    keras: ModuleType,
    config: dict[str, Any],
    compile_cfg: dict[str, Any],
    initial: list[np.ndarray],
    ours: dict[str, Any],
    keras_run: KerasRun,
) -> None:
    """`keras_run` (fit a compiled Keras model and return `_results`) once from the `initial`
    weights ours started from and once from them moved by one ulp: ours held to the drift
    between."""

    def run(weights: list[np.ndarray]) -> dict[str, Any]:
        other = _keras_compiled(keras, config, compile_cfg)
        other.set_weights(weights)
        return keras_run(other)

    theirs = run(initial)
    drift = keras_drift(run, initial, baseline=theirs)
    assert isinstance(drift, dict)
    assert_within_drift(ours, theirs, drift)


def test_the_scenario_matches_keras(keras: ModuleType) -> None:
    km, trainer = _pair(keras, scenario.MODEL, scenario.COMPILE)
    initial = km.get_weights()
    x, y = scenario.X, scenario.Y

    def keras_run(m: Any) -> dict[str, Any]:
        kh = m.fit(x, y, batch_size=128, epochs=8, shuffle=False, validation_data=(x, y),
                   verbose=0)  # fmt: skip
        evaluated = m.evaluate(x, y, batch_size=128, return_dict=True, verbose=0)
        return _results(kh.history, m.get_weights(), predict=m.predict(x, verbose=0),
                        **{f"evaluate {k}": v for k, v in evaluated.items()})  # fmt: skip

    history = trainer.fit(
        x, y, args=FitArgs(batch_size=128, epochs=8, shuffle=False), validation_data=(x, y)
    )
    evaluated = trainer.evaluate(x, y, batch_size=128)
    ours = _results(history.history, trainer.model.get_weights(), predict=trainer.predict(x),
                    **{f"evaluate {k}": v for k, v in evaluated.items()})  # fmt: skip
    _assert_as_keras(keras, scenario.MODEL, scenario.COMPILE, initial, ours, keras_run)


RNG = np.random.default_rng(0)
X4 = RNG.normal(size=(90, 4)).astype(np.float32)
Y_CLASS = RNG.integers(0, 3, size=(90,)).astype(np.float32)
Y_ONEHOT = np.eye(3, dtype=np.float32)[Y_CLASS.astype(int)]
Y_REG = RNG.normal(size=(90, 2)).astype(np.float32)
SW = RNG.uniform(0.1, 2.0, size=(90,)).astype(np.float32)

MLP = [
    ("Dense", {"units": 8, "activation": "tanh"}),
    ("Dense", {"units": 3, "activation": "softmax"}),
]
RMS_CENTERED = {"class_name": "RMSprop", "config": {"momentum": 0.5, "centered": True}}
REG = [("Dense", {"units": 6, "activation": "relu"}), ("Dense", {"units": 2})]


@pytest.mark.parametrize(
    ("layers", "compile_cfg", "y", "fit_kwargs"),
    [
        (MLP, {"optimizer": "sgd", "loss": "sparse_categorical_crossentropy",
               "metrics": ["accuracy"]}, Y_CLASS, {}),
        (MLP, {"optimizer": {"class_name": "SGD", "config": {"learning_rate": 0.05,
                                                              "momentum": 0.9, "nesterov": True}},
               "loss": "categorical_crossentropy", "metrics": ["accuracy", "mse"]}, Y_ONEHOT, {}),
        (MLP, {"optimizer": "rmsprop", "loss": "sparse_categorical_crossentropy",
               "metrics": ["sparse_categorical_accuracy"]}, Y_CLASS,
         {"validation_split": 0.2}),
        (MLP, {"optimizer": RMS_CENTERED,
               "loss": "categorical_crossentropy", "metrics": ["acc"]}, Y_ONEHOT,
         {"sample_weight": SW}),
        (MLP, {"optimizer": "adam", "loss": "crossentropy", "metrics": ["acc"]}, Y_CLASS, {}),
        (MLP, {"optimizer": "adam", "loss": "CE", "metrics": ["accuracy"]}, Y_ONEHOT, {}),
        (REG, {"optimizer": "adam", "loss": "mse", "metrics": ["mae"]}, Y_REG,
         {"sample_weight": SW, "validation_split": 0.3}),
        (REG, {"optimizer": {"class_name": "Adam", "config": {"amsgrad": True, "beta_1": 0.8}},
               "loss": "mean_absolute_error", "metrics": ["mse"], "weighted_metrics": ["mse"]},
         Y_REG, {"sample_weight": SW}),
    ],
)  # fmt: skip
def test_fit_matches_keras(
    keras: ModuleType, layers: Any, compile_cfg: dict[str, Any], y: np.ndarray, fit_kwargs: Any
) -> None:
    config = _layers(layers, 4)
    km, trainer = _pair(keras, config, compile_cfg)
    initial = km.get_weights()
    sw = fit_kwargs.get("sample_weight")

    def keras_run(m: Any) -> dict[str, Any]:
        kh = m.fit(X4, y, batch_size=16, epochs=4, shuffle=False, verbose=0, **fit_kwargs)
        evaluated = m.evaluate(X4, y, sample_weight=sw, batch_size=20, return_dict=True, verbose=0)
        return _results(kh.history, m.get_weights(),
                        **{f"evaluate {k}": v for k, v in evaluated.items()})  # fmt: skip

    args = FitArgs(batch_size=16, epochs=4, shuffle=False,
                   validation_split=fit_kwargs.get("validation_split", 0.0))  # fmt: skip
    history = trainer.fit(X4, y, args=args, sample_weight=sw)
    evaluated = trainer.evaluate(X4, y, sample_weight=sw, batch_size=20)
    ours = _results(history.history, trainer.model.get_weights(),
                    **{f"evaluate {k}": v for k, v in evaluated.items()})  # fmt: skip
    _assert_as_keras(keras, config, compile_cfg, initial, ours, keras_run)


def test_early_stopping_matches_keras(keras: ModuleType) -> None:
    from app.engine.callbacks import EarlyStopping

    compile_cfg = {"optimizer": {"class_name": "SGD", "config": {"learning_rate": 0.5}},
                   "loss": "mse"}  # fmt: skip
    config = _layers(REG, 4)
    # Seeded: where the fit stops is a comparison of two losses, and from these initial weights
    # the loss rises by 5e-3 at the stop, far beyond roundoff, so a one-ulp start (and any
    # CPU's kernels) stops at the same epoch. An unseeded start can land on a near-tie.
    keras.utils.set_random_seed(0)
    km, trainer = _pair(keras, config, compile_cfg)
    initial = km.get_weights()

    def keras_run(m: Any) -> dict[str, Any]:
        kcb = keras.callbacks.EarlyStopping(monitor="loss", patience=1, restore_best_weights=True)
        kh = m.fit(X4, Y_REG, batch_size=8, epochs=30, shuffle=False, verbose=0, callbacks=[kcb])
        return _results(kh.history, m.get_weights())

    cb = EarlyStopping(monitor="loss", patience=1, restore_best_weights=True)
    history = trainer.fit(X4, Y_REG, args=FitArgs(batch_size=8, epochs=30, shuffle=False),
                          callbacks=[cb])  # fmt: skip
    assert cb.stopped_epoch > 0, "the case must stop early"
    ours = _results(history.history, trainer.model.get_weights())
    _assert_as_keras(keras, config, compile_cfg, initial, ours, keras_run)
