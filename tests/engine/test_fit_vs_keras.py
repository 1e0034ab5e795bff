"""Differential tests of fit, evaluate and predict against Keras 3 on its torch backend:
the same model, the same initial weights, the same data, shuffle off; every History value and
the final weights must agree to float32 precision."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
import pytest

from app.engine.compile import CompileSpec
from app.engine.fit_args import FitArgs
from app.engine.models import Model
from app.engine.trainer import Trainer
from tests.support import scenario
from tests.support.keras_json import keras_json
from tests.support.tolerance import Tolerance, assert_close, step_ops


def _tolerance(trainer: Trainer, *, batch: int) -> Tolerance:
    """eps x the optimizer steps taken x one step's roundings (fan-ins up to 4 and 8, the batch):
    plain rates, no amplification. Evaluate and predict after the fit carry the same error."""
    per_step = step_ops(fan_ins=[4, 8], batch=batch)
    return Tolerance.fit(steps=int(trainer.optimizer.iterations), per_step=per_step,
                         what="the MLP")  # fmt: skip


def _layers(spec: list[tuple[str, dict[str, Any]]], input_dim: int) -> dict[str, Any]:
    layers = [{"class_name": "InputLayer", "config": {"batch_shape": [None, input_dim]}}]
    layers += [{"class_name": c, "config": cfg} for c, cfg in spec]
    return {"class_name": "Sequential", "config": {"name": "m", "layers": layers}}


def _keras_model(keras: ModuleType, config: dict[str, Any]) -> Any:

    return keras.models.model_from_json(keras_json(config))


def _pair(
    keras: ModuleType, config: dict[str, Any], compile_cfg: dict[str, Any]
) -> tuple[Any, Trainer]:
    km = _keras_model(keras, config)
    km.compile(
        optimizer=keras.optimizers.get(compile_cfg["optimizer"]),
        loss=compile_cfg["loss"],
        metrics=compile_cfg.get("metrics"),
        weighted_metrics=compile_cfg.get("weighted_metrics"),
    )
    ours = Model.from_config(config, seed=0)
    ours.set_weights(km.get_weights())
    trainer = Trainer(ours, CompileSpec.parse(compile_cfg), device=None)
    return km, trainer


def _assert_history(
    ours: dict[str, list[float]], theirs: dict[str, list[float]], tol: Tolerance
) -> None:
    assert sorted(ours) == sorted(theirs)
    for key in theirs:
        assert_close(ours[key], theirs[key], tol, what=key)


def _assert_weights(trainer: Trainer, km: Any, tol: Tolerance) -> None:
    for i, (ours, theirs) in enumerate(zip(trainer.model.get_weights(), km.get_weights(),
                                           strict=True)):  # fmt: skip
        assert_close(ours, theirs, tol, what=f"weight {i}")


def test_the_scenario_matches_keras(keras: ModuleType) -> None:
    km, trainer = _pair(keras, scenario.MODEL, scenario.COMPILE)
    x, y = scenario.X, scenario.Y
    kh = km.fit(x, y, batch_size=128, epochs=8, shuffle=False, validation_data=(x, y), verbose=0)
    history = trainer.fit(
        x, y, args=FitArgs(batch_size=128, epochs=8, shuffle=False), validation_data=(x, y)
    )
    tol = _tolerance(trainer, batch=128)
    _assert_history(history.history, kh.history, tol)
    _assert_weights(trainer, km, tol)
    ours = trainer.evaluate(x, y, batch_size=128)
    theirs = km.evaluate(x, y, batch_size=128, return_dict=True, verbose=0)
    assert sorted(ours) == sorted(theirs)
    for k in theirs:
        assert_close(ours[k], theirs[k], tol, what=f"evaluate {k}")
    assert_close(trainer.predict(x), km.predict(x, verbose=0), tol, what="predict")


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
    kh = km.fit(X4, y, batch_size=16, epochs=4, shuffle=False, verbose=0, **fit_kwargs)
    sw = fit_kwargs.get("sample_weight")
    args = FitArgs(batch_size=16, epochs=4, shuffle=False,
                   validation_split=fit_kwargs.get("validation_split", 0.0))  # fmt: skip
    history = trainer.fit(X4, y, args=args, sample_weight=sw)
    tol = _tolerance(trainer, batch=20)
    _assert_history(history.history, kh.history, tol)
    _assert_weights(trainer, km, tol)
    ours = trainer.evaluate(X4, y, sample_weight=sw, batch_size=20)
    theirs = km.evaluate(X4, y, sample_weight=sw, batch_size=20, return_dict=True, verbose=0)
    for k in theirs:
        assert_close(ours[k], theirs[k], tol, what=f"evaluate {k}")


def test_early_stopping_matches_keras(keras: ModuleType) -> None:
    from app.engine.callbacks import EarlyStopping

    compile_cfg = {"optimizer": {"class_name": "SGD", "config": {"learning_rate": 0.5}},
                   "loss": "mse"}  # fmt: skip
    config = _layers(REG, 4)
    km, trainer = _pair(keras, config, compile_cfg)
    kcb = keras.callbacks.EarlyStopping(monitor="loss", patience=1, restore_best_weights=True)
    kh = km.fit(X4, Y_REG, batch_size=8, epochs=30, shuffle=False, verbose=0, callbacks=[kcb])
    cb = EarlyStopping(monitor="loss", patience=1, restore_best_weights=True)
    history = trainer.fit(X4, Y_REG, args=FitArgs(batch_size=8, epochs=30, shuffle=False),
                          callbacks=[cb])  # fmt: skip
    assert len(history.history["loss"]) == len(kh.history["loss"])
    _assert_history(history.history, kh.history, _tolerance(trainer, batch=8))
    _assert_weights(trainer, km, _tolerance(trainer, batch=8))
