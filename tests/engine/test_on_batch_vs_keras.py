"""train_on_batch, test_on_batch and predict_on_batch against Keras 3 on its torch backend: the
same model and initial weights, the same batches; every returned log and every weight must agree
to float32 precision after each call."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from app.engine.config.errors import ConfigError, DataError
from app.engine.models.model import Model
from app.engine.training import checkpoint, on_batch
from app.engine.training.compile import CompileSpec
from app.engine.training.fit_args import FitArgs
from app.engine.training.trainer import Trainer
from tests.support.keras_fit import keras_and_ours, sequential

RTOL, ATOL = 1e-6, 1e-7

RNG = np.random.default_rng(7)
X = RNG.normal(size=(60, 4)).astype(np.float32)
Y = RNG.integers(0, 3, size=(60,)).astype(np.float32)
SW = RNG.uniform(0.2, 2.0, size=(60,)).astype(np.float32)
MLP = sequential(
    [("Dense", {"units": 8, "activation": "tanh"}),
     ("Dense", {"units": 3, "activation": "softmax"})],
    [None, 4],
)  # fmt: skip
ADAM = {"class_name": "Adam", "config": {"learning_rate": 0.05}}
SGD_MOMENTUM = {"class_name": "SGD", "config": {"learning_rate": 0.1, "momentum": 0.9}}
BATCHES = [slice(0, 16), slice(16, 40), slice(40, 45), slice(0, 60), slice(5, 21)]


def _compile(optimizer: Any) -> dict[str, Any]:
    return {"optimizer": optimizer, "loss": "sparse_categorical_crossentropy",
            "metrics": ["accuracy"],
            "weighted_metrics": ["sparse_categorical_crossentropy"]}  # fmt: skip


def _assert_logs(ours: dict[str, float], theirs: dict[str, Any]) -> None:
    assert sorted(ours) == sorted(theirs)
    for key, value in theirs.items():
        np.testing.assert_allclose(ours[key], value, rtol=RTOL, atol=ATOL, err_msg=key)


def _assert_weights(trainer: Trainer, km: Any) -> None:
    for ours, theirs in zip(trainer.model.get_weights(), km.get_weights(), strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("optimizer", [ADAM, SGD_MOMENTUM, "rmsprop"], ids=str)
@pytest.mark.parametrize("weighted", [False, True])
def test_repeated_train_on_batch_matches_keras(
    keras: ModuleType, optimizer: Any, weighted: bool
) -> None:
    km, trainer = keras_and_ours(keras, MLP, _compile(optimizer))
    for i, part in enumerate(BATCHES):
        sw = SW[part] if weighted else None
        theirs = km.train_on_batch(X[part], Y[part], sample_weight=sw, return_dict=True)
        ours = on_batch.train_on_batch(trainer, X[part], Y[part], sample_weight=sw)
        _assert_logs(ours, theirs)
        _assert_weights(trainer, km)
        assert trainer.optimizer.iterations == int(km.optimizer.iterations) == i + 1


def test_test_and_predict_on_batch_match_keras(keras: ModuleType) -> None:
    km, trainer = keras_and_ours(keras, MLP, _compile(ADAM))
    for part in BATCHES[:2]:
        km.train_on_batch(X[part], Y[part])
        on_batch.train_on_batch(trainer, X[part], Y[part])
    before = trainer.model.get_weights()
    theirs = km.test_on_batch(X, Y, sample_weight=SW, return_dict=True)
    _assert_logs(on_batch.test_on_batch(trainer, X, Y, sample_weight=SW), theirs)
    out = on_batch.predict_on_batch(trainer.model, X[:7])
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, km.predict_on_batch(X[:7]), rtol=RTOL, atol=ATOL)
    for a, b in zip(before, trainer.model.get_weights(), strict=True):  # no update
        np.testing.assert_array_equal(a, b)
    # test_on_batch is evaluate on one batch of everything
    assert on_batch.test_on_batch(trainer, X, Y) == trainer.evaluate(X, Y, batch_size=len(X))


def test_metrics_are_reset_per_call(keras: ModuleType) -> None:
    km, trainer = keras_and_ours(keras, MLP, _compile("sgd"))
    on_batch.train_on_batch(trainer, X[:30], Y[:30])
    km.train_on_batch(X[:30], Y[:30])
    second = on_batch.train_on_batch(trainer, X[30:31], Y[30:31])
    _assert_logs(second, km.train_on_batch(X[30:31], Y[30:31], return_dict=True))
    assert second["accuracy"] in (0.0, 1.0)  # this one sample alone


@pytest.mark.parametrize("optimizer", [ADAM, SGD_MOMENTUM], ids=str)
def test_fit_then_train_on_batch_continues_the_optimizer(keras: ModuleType, optimizer: Any) -> None:
    """As Keras's fit followed by train_on_batch; also through the checkpoint format, as the
    service stores a fit's final state and continues from it in a new trainer."""
    cfg = _compile(optimizer)
    km, trainer = keras_and_ours(keras, MLP, cfg)
    km.fit(X, Y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    trainer.fit(X, Y, args=FitArgs(batch_size=16, epochs=2, shuffle=False))
    tensors, meta = checkpoint.from_bytes(checkpoint.to_bytes(*trainer.state()))
    again = Trainer(Model.from_config(MLP, seed=0), CompileSpec.parse(cfg), device=None)
    again.load_state(tensors, meta)
    for part in BATCHES[:3]:
        theirs = km.train_on_batch(X[part], Y[part], return_dict=True)
        _assert_logs(on_batch.train_on_batch(trainer, X[part], Y[part]), theirs)
        _assert_logs(on_batch.train_on_batch(again, X[part], Y[part]), theirs)
        _assert_weights(trainer, km)
        _assert_weights(again, km)
    assert again.optimizer.iterations == int(km.optimizer.iterations) == 8 + 3


def test_set_weights_keeps_the_optimizer_state(keras: ModuleType) -> None:
    """Keras's set_weights assigns the model's variables only: Adam's moments and step count
    carry on."""
    km, trainer = keras_and_ours(keras, MLP, _compile(ADAM))
    km.train_on_batch(X[:20], Y[:20])
    on_batch.train_on_batch(trainer, X[:20], Y[:20])
    new = [w * 0.5 for w in km.get_weights()]
    km.set_weights(new)
    trainer.model.set_weights(new)
    theirs = km.train_on_batch(X[20:], Y[20:], return_dict=True)
    _assert_logs(on_batch.train_on_batch(trainer, X[20:], Y[20:]), theirs)
    _assert_weights(trainer, km)


def test_class_weight_matches_keras(keras: ModuleType) -> None:
    km, trainer = keras_and_ours(keras, MLP, _compile(ADAM))
    weights = {0: 0.5, 2: 3.0}
    theirs = km.train_on_batch(X, Y, class_weight=weights, return_dict=True)
    _assert_logs(on_batch.train_on_batch(trainer, X, Y, class_weight={"0": 0.5, "2": 3.0}), theirs)
    _assert_weights(trainer, km)
    with pytest.raises(ConfigError) as info:
        on_batch.train_on_batch(trainer, X, Y, sample_weight=SW, class_weight=weights)
    assert info.value.loc == ("class_weight",)


def _two_outputs(keras: ModuleType) -> Any:
    a = keras.Input((4,), name="a")
    h = keras.layers.Dense(5, activation="relu", name="h")(a)
    cls = keras.layers.Dense(3, activation="softmax", name="cls")(h)
    reg = keras.layers.Dense(1, name="reg")(h)
    return keras.Model(a, [cls, reg])


def test_two_outputs_log_keras_names(keras: ModuleType) -> None:
    cfg = {"optimizer": ADAM, "loss": ["sparse_categorical_crossentropy", "mse"],
           "loss_weights": [0.5, 2.0], "metrics": [["accuracy"], ["mae"]]}  # fmt: skip
    km = _two_outputs(keras)
    km.compile(optimizer=keras.optimizers.get(cfg["optimizer"]), loss=cfg["loss"],
               loss_weights=cfg["loss_weights"], metrics=cfg["metrics"])  # fmt: skip
    ours = Model.from_config(json.loads(km.to_json()), seed=0)
    ours.set_weights(km.get_weights())
    trainer = Trainer(ours, CompileSpec.parse(cfg), device=torch.device("cpu"))
    y_reg = RNG.normal(size=(60, 1)).astype(np.float32)
    for part in BATCHES[:3]:
        theirs = km.train_on_batch(X[part], [Y[part], y_reg[part]], return_dict=True)
        logs = on_batch.train_on_batch(trainer, X[part], {"cls": Y[part], "reg": y_reg[part]})
        assert set(logs) == {"loss", "cls_loss", "reg_loss", "cls_accuracy", "reg_mae"}
        _assert_logs(logs, theirs)
    _assert_logs(on_batch.test_on_batch(trainer, X, [Y, y_reg]),
                 km.test_on_batch(X, [Y, y_reg], return_dict=True))  # fmt: skip
    out = on_batch.predict_on_batch(trainer.model, X[:5])
    assert isinstance(out, list)
    for got, want in zip(out, km.predict_on_batch(X[:5]), strict=True):
        np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


def test_bad_batches_are_refused_with_the_field_named() -> None:
    trainer = Trainer(Model.from_config(MLP, seed=0), CompileSpec.parse(_compile("sgd")),
                      device=torch.device("cpu"))  # fmt: skip
    before = trainer.model.get_weights()
    bad_x = X[:4].copy()
    bad_x[1, 2] = np.nan
    cases = [
        (lambda: on_batch.train_on_batch(trainer, X[:5], Y[:4]), ("y",), "same length"),
        (lambda: on_batch.train_on_batch(trainer, bad_x, Y[:4]), ("x", 1, 2), "finite"),
        (lambda: on_batch.train_on_batch(trainer, X[:4, :3], Y[:4]), ("x",), "expected shape"),
        (lambda: on_batch.train_on_batch(trainer, X[:4], Y[:4] + 5), ("y",), ""),
        (lambda: on_batch.test_on_batch(trainer, X[:4], None), ("y",), "required"),
        (lambda: on_batch.predict_on_batch(trainer.model, bad_x), ("x", 1, 2), "finite"),
    ]
    for call, loc, text in cases:
        with pytest.raises(DataError) as info:
            call()
        assert info.value.loc == loc, (loc, info.value)
        assert text in info.value.message
    for a, b in zip(before, trainer.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert trainer._optimizer is None or trainer.optimizer.iterations == 0


def test_one_batch_is_limited(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(on_batch, "MAX_BATCH_SIZE", 10)
    trainer = Trainer(Model.from_config(MLP, seed=0), CompileSpec.parse(_compile("sgd")),
                      device=torch.device("cpu"))  # fmt: skip
    for call in (lambda: on_batch.train_on_batch(trainer, X[:11], Y[:11]),
                 lambda: on_batch.test_on_batch(trainer, X[:11], Y[:11]),
                 lambda: on_batch.predict_on_batch(trainer.model, X[:11])):  # fmt: skip
        with pytest.raises(DataError) as info:
            call()
        assert info.value.loc == ("x",) and "at most 10" in info.value.message
    assert on_batch.train_on_batch(trainer, X[:10], Y[:10])["loss"] > 0
