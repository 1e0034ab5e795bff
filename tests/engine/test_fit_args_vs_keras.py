"""fit's class_weight, steps_per_epoch, validation_steps, shuffle="batch", the sample weights
of validation data, initial_epoch, validation_freq, validation_batch_size and partial batches,
each against Keras 3 (torch backend) from the same initial weights: every History value and the
final weights must agree to float32 precision."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from app.engine.config.errors import ConfigError, DataError
from app.engine.models.model import Model
from app.engine.training.compile import CompileSpec
from app.engine.training.fit_args import FitArgs
from app.engine.training.trainer import Trainer
from tests.support.keras_fit import assert_same_fit, keras_and_ours, measured_drift, sequential

# Every fit here is held to a multiple of Keras's own drift from initial weights moved by one ulp
# (CONTRIBUTING.md): a worst-case eps bound of its steps would allow a hundred times more.

RNG = np.random.default_rng(7)
X = RNG.normal(size=(22, 4)).astype(np.float32)
LABELS = RNG.integers(0, 3, size=(22,))
ONE_HOT = np.eye(3, dtype=np.float32)[LABELS]
SW = RNG.uniform(0.2, 2.0, size=(22,)).astype(np.float32)
CLASSIFIER = sequential([("Dense", {"units": 5, "activation": "tanh"}),
                         ("Dense", {"units": 3, "activation": "softmax"})], [None, 4])  # fmt: skip
SPARSE = {"optimizer": "adam", "loss": "sparse_categorical_crossentropy",
          "metrics": ["accuracy"], "weighted_metrics": ["accuracy"]}  # fmt: skip
REGRESSOR = sequential([("Dense", {"units": 1})], [None, 4])
MSE = {"optimizer": "sgd", "loss": "mse", "metrics": ["mae"]}
Y_REG = RNG.normal(size=(22, 1)).astype(np.float32)


def _both(
    keras: ModuleType,
    config: dict[str, Any],
    compile_cfg: dict[str, Any],
    x: np.ndarray,
    y: np.ndarray,
    ours: dict[str, Any],
    theirs: dict[str, Any] | None = None,
) -> None:
    """Fit here with FitArgs(**ours) and in Keras with the same arguments (or `theirs`) and
    compare; fit keyword arguments that are not FitArgs (sample_weight, validation_data) are
    passed to both."""
    km, trainer = keras_and_ours(keras, config, compile_cfg)
    extra = {k: ours.pop(k) for k in ("sample_weight", "validation_data") if k in ours}
    theirs = {k: v for k, v in (theirs or ours).items() if k not in extra}

    def fit(m: Any) -> Any:
        return m.fit(x, y, verbose=0, **theirs, **extra)

    kh = fit(km)
    history = trainer.fit(x, y, args=FitArgs(**ours), **extra)
    drift = measured_drift(keras, config, compile_cfg, fit=fit, keras_history=kh.history, km=km)
    assert_same_fit(history.history, kh.history, trainer, km, drift=drift)


@pytest.mark.parametrize(
    ("y", "loss", "class_weight"),
    [
        (LABELS.astype(np.float32), "sparse_categorical_crossentropy", {0: 0.5, 2: 3.0}),
        (ONE_HOT, "categorical_crossentropy", {0: 2.0, 1: 0.25, 2: 1.5}),
        (LABELS[:, None].astype(np.float32), "sparse_categorical_crossentropy", {1: 4.0}),
    ],
    ids=["sparse", "one-hot-argmax", "last-dim-1-squeezed"],
)
def test_class_weight_matches_keras(
    keras: ModuleType, y: np.ndarray, loss: str, class_weight: dict[int, float]
) -> None:
    compile_cfg = {**SPARSE, "loss": loss}
    # Keras 3.15.1 matches int keys only; ours takes JSON's string spelling of the same keys.
    ours = {str(k): v for k, v in class_weight.items()}
    args = dict(batch_size=8, epochs=3, shuffle=False, validation_data=(X[:6], y[:6]))
    _both(keras, CLASSIFIER, compile_cfg, X, y, {**args, "class_weight": ours},
          {**args, "class_weight": class_weight})  # fmt: skip


def test_class_weight_spares_the_validation_split(keras: ModuleType) -> None:
    y = LABELS.astype(np.float32)
    args = dict(batch_size=5, epochs=2, shuffle=False, validation_split=0.3)
    _both(keras, CLASSIFIER, SPARSE, X, y, {**args, "class_weight": {1: 3.0, 0: 0.5}})


def test_class_weight_rounds_labels(keras: ModuleType) -> None:
    """Labels are rounded to the nearest class before the lookup (0.6 is class 1)."""
    y = np.where(LABELS == 1, 0.6, 0.0).astype(np.float32)[:, None]
    compile_cfg = {"optimizer": "sgd", "loss": "binary_crossentropy",
                   "weighted_metrics": ["binary_accuracy"]}  # fmt: skip
    config = sequential([("Dense", {"units": 1, "activation": "sigmoid"})], [None, 4])
    _both(keras, config, compile_cfg, X, y, dict(batch_size=6, epochs=2, shuffle=False,
                                                 class_weight={1: 2.0}))  # fmt: skip


@pytest.mark.parametrize(
    ("fit", "loc", "text"),
    [
        ({"class_weight": {"a": 1.0}}, ("class_weight", "a"), "class indices"),
        ({"class_weight": {"-1": 1.0}}, ("class_weight", "-1"), "class indices"),
        ({"class_weight": {0: -2.0}}, ("class_weight", "0"), ">= 0"),
        ({"class_weight": {0: float("nan")}}, ("class_weight", "0"), "finite"),
        ({"class_weight": {0: 1.0, "0": 2.0}}, ("class_weight", "0"), "twice"),
        ({"class_weight": [1.0]}, ("class_weight",), "object"),
        ({"class_weight": {0: 2.0}, "sample_weight": SW}, ("class_weight",), "sample_weight"),
        ({"shuffle": "batches"}, ("shuffle",), "'batch'"),
        ({"steps_per_epoch": 0}, ("steps_per_epoch",), "[1,"),
        ({"validation_steps": True}, ("validation_steps",), "integer"),
    ],
)
def test_bad_fit_arguments_are_refused(
    keras: ModuleType, fit: dict[str, Any], loc: tuple[Any, ...], text: str
) -> None:
    _, trainer = keras_and_ours(keras, CLASSIFIER, SPARSE)
    sw = fit.pop("sample_weight", None)
    with pytest.raises(ConfigError) as info:
        trainer.fit(X, LABELS.astype(np.float32), args=FitArgs(**fit), sample_weight=sw)
    assert info.value.loc == loc
    assert text in info.value.message


def test_class_weight_needs_one_output(keras: ModuleType) -> None:
    a = keras.Input((4,), name="x")
    km = keras.Model(a, [keras.layers.Dense(2, name="z")(a), keras.layers.Dense(1, name="b")(a)])
    config = json.loads(km.to_json())
    trainer = Trainer(Model.from_config(config, seed=0), CompileSpec.parse({"loss": "mse"}))
    with pytest.raises(ConfigError) as info:
        trainer.fit(X, [ONE_HOT[:, :2], Y_REG], args=FitArgs(class_weight={0: 1.0}))
    assert info.value.loc == ("class_weight",)
    assert "one output" in info.value.message


def test_steps_per_epoch_carries_the_batch_order_across_epochs(keras: ModuleType) -> None:
    """N=22, batch 8: three batches per pass; two steps per epoch take batches {0,1}, {2},
    {0,1}, {2}, ... (an epoch ends early when the pass runs out)."""
    _both(keras, REGRESSOR, MSE, X, Y_REG,
          dict(batch_size=8, steps_per_epoch=2, epochs=5, shuffle=False,
               validation_data=(X[:5], Y_REG[:5])))  # fmt: skip


@pytest.mark.parametrize("steps", [3, 5, 30])
def test_steps_per_epoch_without_batch_size(keras: ModuleType, steps: int) -> None:
    """The batch size is ceil(N / steps); more steps than batches ends every epoch early."""
    _both(keras, REGRESSOR, MSE, X, Y_REG, dict(steps_per_epoch=steps, epochs=3, shuffle=False))


def test_validation_steps_takes_the_first_batches(keras: ModuleType) -> None:
    _both(keras, REGRESSOR, MSE, X, Y_REG,
          dict(batch_size=4, epochs=3, shuffle=False, validation_steps=2,
               validation_batch_size=3, validation_data=(X[:10], Y_REG[:10])))  # fmt: skip


def test_validation_data_sample_weights_match_keras(keras: ModuleType) -> None:
    _both(keras, REGRESSOR, {**MSE, "weighted_metrics": ["mae"]}, X, Y_REG,
          dict(batch_size=6, epochs=2, shuffle=False, sample_weight=SW,
               validation_data=(X[:9], Y_REG[:9], SW[:9] * 2)))  # fmt: skip


def test_validation_split_carries_the_sample_weights(keras: ModuleType) -> None:
    _both(
        keras,
        REGRESSOR,
        {**MSE, "weighted_metrics": ["mae"]},
        X,
        Y_REG,
        dict(batch_size=6, epochs=2, shuffle=False, sample_weight=SW, validation_split=0.25),
    )


def test_shuffle_batch_matches_keras_to_summation_order(keras: ModuleType) -> None:
    """Within-batch order only changes the order of each batch's sums, so Keras's "batch" run
    and ours agree to float32 rounding of a mean (a few ulps), whatever the two RNGs drew."""
    km, trainer = keras_and_ours(keras, REGRESSOR, MSE)

    def fit(m: Any) -> Any:
        return m.fit(X, Y_REG, batch_size=8, epochs=3, shuffle="batch", verbose=0)

    kh = fit(km)
    history = trainer.fit(X, Y_REG, args=FitArgs(batch_size=8, epochs=3, shuffle="batch"))
    # Keras's second run (the drift) draws other within-batch orders too: what it measures is the
    # very effect of summing in another order.
    drift = measured_drift(keras, REGRESSOR, MSE, fit=fit, keras_history=kh.history, km=km)
    assert_same_fit(history.history, kh.history, trainer, km, drift=drift)


def test_wrong_class_weight_labels_are_refused(keras: ModuleType) -> None:
    _, trainer = keras_and_ours(keras, CLASSIFIER, {**SPARSE, "loss": "mse"})
    y3 = np.zeros((22, 2, 3), dtype=np.float32)
    with pytest.raises(DataError) as info:
        trainer.fit(X, y3, args=FitArgs(class_weight={0: 1.0}))
    assert info.value.loc[0] in ("class_weight", "y")


@pytest.mark.parametrize(
    "args",
    [
        # initial_epoch: epochs 2..4 run, numbered as Keras numbers them.
        dict(batch_size=8, epochs=5, initial_epoch=2, shuffle=False, validation_split=0.25),
        # validation_freq as an int and as a list of 1-based epochs: val_ values only there.
        dict(batch_size=8, epochs=5, shuffle=False, validation_split=0.25, validation_freq=2),
        dict(batch_size=8, epochs=4, shuffle=False, validation_split=0.25,
             validation_freq=[1, 3, 4]),
        # A batch size that leaves a partial last batch, and a validation batch size of its own.
        dict(batch_size=5, epochs=3, shuffle=False, validation_split=0.3, validation_batch_size=4),
        # Keras's default batch size (32, one batch of 22 here).
        dict(epochs=3, shuffle=False),
    ],
    ids=["initial_epoch", "validation_freq_int", "validation_freq_list", "partial_batches",
         "default_batch_size"],
)  # fmt: skip
def test_each_fit_argument_alone_matches_keras(keras: ModuleType, args: dict[str, Any]) -> None:
    _both(keras, CLASSIFIER, SPARSE, X, LABELS.astype(np.float32), dict(args))


def test_initial_epoch_numbers_the_epochs_as_keras(keras: ModuleType) -> None:
    km, trainer = keras_and_ours(keras, REGRESSOR, MSE)
    kh = km.fit(X, Y_REG, batch_size=8, epochs=4, initial_epoch=1, shuffle=False, verbose=0)
    history = trainer.fit(X, Y_REG, args=FitArgs(batch_size=8, epochs=4, initial_epoch=1,
                                                 shuffle=False))  # fmt: skip
    assert history.epoch == kh.epoch == [1, 2, 3]
