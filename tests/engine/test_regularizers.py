"""Regularizers and constraints against Keras 3 on its torch backend: each by every name Keras
accepts (values on random weights, bit for bit or within an ulp), fits whose loss carries weight
and activity penalties and whose weights are projected after every step (History, evaluate and
final weights), configs that Keras writes and reads, and bad configs that name the field."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from app.engine.config.errors import ConfigError
from app.engine.models.model import Model
from app.engine.training.fit_args import FitArgs
from app.engine.weights import constraints, regularizers
from tests.support.keras_fit import (
    assert_refused,
    assert_same_evaluate,
    assert_same_fit,
    keras_and_ours,
    keras_evaluate,
    measured_drift,
    sequential,
)
from tests.support.keras_json import keras_json
from tests.support.tolerance import Tolerance

# 12 steps of Adam at 0.02 or SGD at 0.1 through regularized, constrained layers: every value held
# to a multiple of Keras's one-ulp drift (CONTRIBUTING.md), except where binding projections make
# the fit discontinuous in its start (below).
RNG = np.random.default_rng(7)
W2 = RNG.normal(size=(6, 5)).astype(np.float32)
W4 = RNG.normal(size=(3, 2, 4, 5)).astype(np.float32)


def _tight(ours: torch.Tensor, theirs: Any) -> None:
    """Equal to Keras's value within one float32 ulp."""
    got = ours.detach().numpy()
    want = np.asarray(theirs.detach().cpu().numpy() if hasattr(theirs, "detach") else theirs)
    np.testing.assert_array_max_ulp(got.astype(np.float32), want.astype(np.float32), maxulp=1)


# -- each object against Keras's own ------------------------------------------------------------
REGULARIZER_CONFIGS = [
    ("L1", {"l1": 0.3}),
    ("L2", {"l2": 0.07}),
    ("L1L2", {"l1": 0.02, "l2": 0.5}),
    ("L1L2", {"l1": 0.02}),
    ("L1L2", {"l1": None, "l2": 0.1}),
    ("L1", {"l1": None}),
    ("OrthogonalRegularizer", {"factor": 0.2}),
    ("OrthogonalRegularizer", {"factor": 0.3, "mode": "columns"}),
]


@pytest.mark.parametrize("name", regularizers.REGULARIZERS.all_names())
def test_every_regularizer_name_matches_keras(keras: ModuleType, name: str) -> None:
    ours = regularizers.get(name, ("r",))
    theirs = keras.regularizers.get(name)
    assert ours is not None and ours.get_config() == theirs.get_config()
    _tight(ours(torch.as_tensor(W2)), theirs(keras.ops.convert_to_tensor(W2)))


@pytest.mark.parametrize(("class_name", "config"), REGULARIZER_CONFIGS)
@pytest.mark.parametrize("weight", [W2, W2 * 1e-3, np.abs(W2)], ids=["normal", "small", "pos"])
def test_regularizer_configs_match_keras(
    keras: ModuleType, class_name: str, config: dict[str, Any], weight: np.ndarray
) -> None:
    spec = {"module": "keras.regularizers", "class_name": class_name, "config": config}
    ours = regularizers.get(spec, ("r",))
    theirs = keras.regularizers.get(dict(spec))
    assert ours is not None and ours.serialize() == keras.regularizers.serialize(theirs)
    _tight(ours(torch.as_tensor(weight)), theirs(keras.ops.convert_to_tensor(weight)))


def test_keras_names_are_exactly_ours(keras: ModuleType) -> None:
    from keras.src import constraints as kc
    from keras.src import regularizers as kr

    # The base classes are left out: they penalize and project nothing.
    assert set(regularizers.REGULARIZERS.all_names()) == set(kr.ALL_OBJECTS_DICT) - {
        "Regularizer",
        "regularizer",
    }
    assert set(constraints.CONSTRAINTS.all_names()) == set(kc.ALL_OBJECTS_DICT) - {
        "Constraint",
        "constraint",
    }


CONSTRAINT_CONFIGS = [
    ("MaxNorm", {"max_value": 1.5}, W2),
    ("MaxNorm", {"max_value": 1, "axis": 1}, W2),
    ("MaxNorm", {"max_value": 2.0, "axis": [0, 1, 2]}, W4),
    ("MaxNorm", {"max_value": 0.5, "axis": -1}, W4),
    ("MinMaxNorm", {"min_value": 1.5, "max_value": 2.5}, W2),
    ("MinMaxNorm", {"min_value": 0.5, "max_value": 1.0, "rate": 0.3, "axis": [0, 1]}, W4),
    ("UnitNorm", {"axis": 1}, W2),
    ("UnitNorm", {"axis": [0, 2]}, W4),
    ("NonNeg", {}, W4),
]


@pytest.mark.parametrize("name", constraints.CONSTRAINTS.all_names())
@pytest.mark.parametrize("weight", [W2, W4, W2 * 1e-4], ids=["matrix", "kernel", "small"])
def test_every_constraint_name_matches_keras(
    keras: ModuleType, name: str, weight: np.ndarray
) -> None:
    ours = constraints.get(name, ("c",))
    theirs = keras.constraints.get(name)
    assert ours is not None and ours.get_config() == theirs.get_config()
    _tight(ours(torch.as_tensor(weight)), theirs(keras.ops.convert_to_tensor(weight)))


@pytest.mark.parametrize(("class_name", "config", "weight"), CONSTRAINT_CONFIGS)
def test_constraint_configs_match_keras(
    keras: ModuleType, class_name: str, config: dict[str, Any], weight: np.ndarray
) -> None:
    spec = {"module": "keras.constraints", "class_name": class_name, "config": config}
    ours = constraints.get(spec, ("c",))
    theirs = keras.constraints.get(dict(spec))
    assert ours is not None and ours.serialize() == keras.constraints.serialize(theirs)
    ours.check_weight(weight.shape)
    _tight(ours(torch.as_tensor(weight)), theirs(keras.ops.convert_to_tensor(weight)))


# -- layers: losses, projections, configs ------------------------------------------------------
L2 = {"class_name": "L2", "config": {"l2": 0.02}}
L1 = {"class_name": "L1", "config": {"l1": 0.01}}
L1L2 = {"class_name": "L1L2", "config": {"l1": 0.003, "l2": 0.004}}
MAXNORM = {"class_name": "MaxNorm", "config": {"max_value": 0.6, "axis": 0}}
MLP = [
    ("Dense", {"units": 8, "activation": "tanh", "kernel_regularizer": L2,
               "bias_regularizer": L1, "activity_regularizer": L1L2,
               "kernel_constraint": MAXNORM, "bias_initializer": "random_normal"}),
    ("Dense", {"units": 6, "activation": "relu", "kernel_regularizer": "l1l2",
               "kernel_constraint": "non_neg", "bias_constraint": "unit_norm"}),
    ("ActivityRegularization", {"l1": 0.002, "l2": 0.01}),
    ("Dense", {"units": 3, "activation": "softmax", "activity_regularizer": "l2",
               "kernel_regularizer": {"class_name": "OrthogonalRegularizer",
                                      "config": {"factor": 0.05, "mode": "columns"}},
               "bias_constraint": {"class_name": "MinMaxNorm",
                                   "config": {"min_value": 0.1, "max_value": 0.3, "rate": 0.5}}}),
]  # fmt: skip
EVERY_LAYER = [
    ("Embedding", {"input_dim": 10, "output_dim": 4, "embeddings_regularizer": L2,
                   "embeddings_initializer": {"class_name": "RandomNormal",
                                              "config": {"stddev": 1.0}},
                   "embeddings_constraint": {"class_name": "MaxNorm",
                                             "config": {"max_value": 2.0, "axis": 1}},
                   "activity_regularizer": "l1"}),
    ("Conv1D", {"filters": 6, "kernel_size": 2, "activation": "relu", "kernel_regularizer": L1L2,
                "bias_regularizer": "l2", "kernel_constraint": {
                    "class_name": "MaxNorm", "config": {"max_value": 0.5, "axis": [0, 1]}},
                "bias_constraint": "non_neg", "activity_regularizer": L1,
                "bias_initializer": "random_normal"}),
    ("BatchNormalization", {"gamma_regularizer": L2, "beta_regularizer": L1,
                            "gamma_constraint": {"class_name": "MinMaxNorm",
                                                 "config": {"min_value": 0.9, "max_value": 1.0,
                                                            "rate": 0.7}},
                            "beta_constraint": "non_neg"}),
    ("PReLU", {"alpha_initializer": {"class_name": "Constant", "config": {"value": 0.2}},
               "alpha_regularizer": "l2", "alpha_constraint": "non_neg", "shared_axes": [1]}),
    ("LayerNormalization", {"gamma_regularizer": "l1", "beta_regularizer": L2,
                            "beta_constraint": "unit_norm"}),
    ("GroupNormalization", {"groups": 3, "gamma_regularizer": L1L2,
                            "gamma_constraint": "max_norm", "beta_regularizer": "l2"}),
    ("Flatten", {"activity_regularizer": "l2"}),
    ("Dense", {"units": 3, "activation": "softmax", "kernel_regularizer": "l2"}),
]  # fmt: skip
RNG_FIT = np.random.default_rng(11)
X_MLP = RNG_FIT.normal(size=(70, 5)).astype(np.float32)
X_IDS = RNG_FIT.integers(0, 10, size=(70, 7)).astype(np.float32)
Y3 = RNG_FIT.integers(0, 3, size=(70,)).astype(np.float32)
ADAM = {"optimizer": {"class_name": "Adam", "config": {"learning_rate": 0.02}},
        "loss": "sparse_categorical_crossentropy", "metrics": ["acc"]}  # fmt: skip
SGD = {"optimizer": {"class_name": "SGD", "config": {"learning_rate": 0.1, "momentum": 0.5}},
       "loss": "sparse_categorical_crossentropy", "metrics": ["acc"]}  # fmt: skip


@pytest.mark.parametrize(
    ("spec", "shape", "x", "compile_cfg"),
    [
        (MLP, [None, 5], X_MLP, ADAM),
        (MLP, [None, 5], X_MLP, SGD),
        (EVERY_LAYER, [None, 7], X_IDS, ADAM),
        (EVERY_LAYER, [None, 7], X_IDS, SGD),
    ],
    ids=["mlp-adam", "mlp-sgd", "every-layer-adam", "every-layer-sgd"],
)
def test_regularized_constrained_fit_matches_keras(
    keras: ModuleType, spec: Any, shape: list[Any], x: np.ndarray, compile_cfg: dict[str, Any]
) -> None:
    config = sequential(spec, shape)
    km, trainer = keras_and_ours(keras, config, compile_cfg, keras_seed=0)

    # 49 training rows in batches of 16 leave a last batch of 1 (activity penalties are divided
    # by the batch size); the max-norm of 2.0 binds on about half the embedding rows. A model
    # that squeezes its embeddings far below their initial norm is ill-conditioned (its BN
    # variance cancels), and float32 noise then grows past 1e-6 in both frameworks alike.
    def fit(m: Any) -> Any:
        return m.fit(x, Y3, batch_size=16, epochs=4, shuffle=False, verbose=0,
                     validation_split=0.3)  # fmt: skip

    kh = fit(km)
    args = FitArgs(batch_size=16, epochs=4, shuffle=False, validation_split=0.3)
    history = trainer.fit(x, Y3, args=args)
    if x is X_IDS:
        # Max-norm and unit-norm projections that bind make this fit discontinuous in its start
        # (a one-ulp move changes Keras's result by per cent): no drift to measure, so the
        # worst-case bound of its 12 steps (one step: the forward fan-ins and a batch of 49).
        drift = None
        floor = Tolerance.fit(steps=12, per_step=7 * 4 + 2 * 4 * 6 + 6 + 49 + 20, what="the layers")
    else:
        drift = measured_drift(keras, config, compile_cfg, fit=fit, keras_history=kh.history,
                               km=km, after=keras_evaluate(x, Y3, batch_size=25))  # fmt: skip
        floor = None
    assert_same_fit(history.history, kh.history, trainer, km, floor=floor, drift=drift)
    assert_same_evaluate(trainer, km, x, Y3, batch_size=25, floor=floor, drift=drift)


def test_added_losses_are_keras_losses_after_a_call(keras: ModuleType) -> None:
    config = sequential(MLP, [None, 5])
    km = keras.models.model_from_json(keras_json(config))
    ours = Model.from_config(config, seed=0)
    ours.set_weights(km.get_weights())
    ours(torch.as_tensor(X_MLP[:9]))
    km(X_MLP[:9])
    # Keras lists the activity penalties first, then the weight penalties; compare as sets.
    # The activity penalties see the layers' outputs, which agree to the forward tolerance.
    got = sorted(float(t.detach()) for t in ours.added_losses())
    want = sorted(float(t.detach()) for t in km.losses)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)


def test_frozen_weights_are_neither_penalized_nor_projected(keras: ModuleType) -> None:
    spec = [("Dense", {"units": 3, "trainable": False, "kernel_regularizer": "l2",
                       "kernel_constraint": "non_neg"})]  # fmt: skip
    config = sequential(spec, [None, 4])
    km = keras.models.model_from_json(keras_json(config))
    km(X_MLP[:2, :4])
    assert km.losses == []
    model = Model.from_config(config, seed=0)
    model(torch.as_tensor(X_MLP[:2, :4]))
    assert model.added_losses() == []
    before = model.get_weights()[0]
    model.apply_constraints()
    np.testing.assert_array_equal(model.get_weights()[0], before)


def test_only_weights_that_got_a_gradient_are_projected() -> None:
    # Keras's optimizer drops variables without a gradient before it applies constraints.
    spec = [
        (
            "Dense",
            {
                "units": 3,
                "kernel_constraint": "non_neg",
                "bias_constraint": "non_neg",
                "bias_initializer": {"class_name": "Constant", "config": {"value": -1}},
            },
        )
    ]
    model = Model.from_config(sequential(spec, [None, 4]), seed=0)  # fmt: skip
    (layer,) = model.layer_list()
    model.apply_constraints()
    assert (layer.kernel < 0).any() and (layer.bias < 0).all()  # no gradients yet
    layer.kernel.grad = torch.zeros_like(layer.kernel)
    model.apply_constraints()
    assert (layer.kernel >= 0).all() and (layer.bias < 0).all()


def test_unregularized_layers_cost_nothing() -> None:
    model = Model.from_config(sequential([("Dense", {"units": 3}), ("Dense", {"units": 2})],
                                          [None, 4]), seed=0)  # fmt: skip
    for layer in model.layer_list():
        assert not layer.has_added_losses and not layer.has_constraints
        assert not layer._forward_hooks  # no per-call work
        assert layer.added_losses() == []


@pytest.mark.parametrize(
    ("spec", "shape"),
    [(MLP, [None, 5]), (EVERY_LAYER, [None, 7])],
    ids=["mlp", "every-layer"],
)
def test_configs_round_trip_with_keras(keras: ModuleType, spec: Any, shape: list[Any]) -> None:
    km = keras.models.model_from_json(keras_json(sequential(spec, shape)))
    theirs = json.loads(km.to_json())
    ours = Model.from_config(theirs, seed=0).get_config()
    for mine, keras_layer in zip(ours["config"]["layers"][1:], theirs["config"]["layers"][1:],
                                 strict=True):  # fmt: skip
        options = {k: v for k, v in keras_layer["config"].items()
                   if k.endswith(("_regularizer", "_constraint"))}  # fmt: skip
        assert {k: mine["config"].get(k) for k in options} == options
        assert set(mine["config"]) == set(keras_layer["config"]) - {"quantization_config"}
    # Keras reads ours back to the same configuration.
    again = keras.models.model_from_json(json.dumps(ours))
    assert json.loads(again.to_json()) == theirs


# -- errors ---------------------------------------------------------------------------------
LOC = ("config", "layers", 1, "config")


@pytest.mark.parametrize(
    ("options", "loc", "message"),
    [
        ({"kernel_regularizer": "l3"}, ("kernel_regularizer",), "unknown regularizer"),
        ({"kernel_regularizer": "l1_l2"}, ("kernel_regularizer",), "unknown regularizer"),
        ({"bias_regularizer": {"class_name": "L2", "config": {"l2": -0.1}}},
         ("bias_regularizer", "config", "l2"), ">= 0.0"),
        ({"kernel_regularizer": {"class_name": "L1", "config": {"l1": "big"}}},
         ("kernel_regularizer", "config", "l1"), "must be a number"),
        ({"kernel_regularizer": {"class_name": "L2", "config": {"l3": 0.1}}},
         ("kernel_regularizer", "config", "l3"), "unknown argument"),
        ({"kernel_regularizer": {"module": "my.regularizers", "class_name": "L2"}},
         ("kernel_regularizer", "module"), "Keras's own"),
        ({"kernel_regularizer": {"class_name": "L2", "registered_name": "MyL2"}},
         ("kernel_regularizer", "registered_name"), "custom"),
        ({"kernel_regularizer": {"class_name": "OrthogonalRegularizer",
                                 "config": {"mode": "diagonal"}}},
         ("kernel_regularizer", "config", "mode"), "must be one of"),
        ({"kernel_regularizer": {"class_name": "OrthogonalRegularizer",
                                 "config": {"factor": None}}},
         ("kernel_regularizer", "config", "factor"), "must be a number"),
        ({"activity_regularizer": "orthogonal_regularizer"}, ("activity_regularizer",),
         "rank-2 weights"),
        ({"activity_regularizer": 3}, ("activity_regularizer",), "a name or"),
        ({"kernel_constraint": "clip"}, ("kernel_constraint",), "unknown constraint"),
        ({"kernel_constraint": {"class_name": "MaxNorm", "config": {"max_value": -1}}},
         ("kernel_constraint", "config", "max_value"), ">= 0.0"),
        ({"kernel_constraint": {"class_name": "MaxNorm", "config": {"axis": 2}}},
         ("kernel_constraint", "config", "axis"), "out of range"),
        ({"bias_constraint": {"class_name": "UnitNorm", "config": {"axis": [0, -1]}}},
         ("bias_constraint", "config", "axis"), "names an axis twice"),
        ({"kernel_constraint": {"class_name": "UnitNorm", "config": {"axis": "rows"}}},
         ("kernel_constraint", "config", "axis"), "integer or a list"),
        ({"kernel_constraint": {"class_name": "MinMaxNorm",
                                "config": {"min_value": 2.0, "max_value": 1.0}}},
         ("kernel_constraint", "config", "max_value"), ">= min_value"),
        ({"kernel_constraint": {"class_name": "MinMaxNorm", "config": {"rate": 1.5}}},
         ("kernel_constraint", "config", "rate"), "[0, 1]"),
        ({"kernel_constraint": {"class_name": "NonNeg", "module": "keras.evil"}},
         ("kernel_constraint",), None),
    ],
)  # fmt: skip
def test_bad_options_name_the_field(
    options: dict[str, Any], loc: tuple[Any, ...], message: str | None
) -> None:
    config = sequential([("Dense", {"units": 3, **options})], [None, 4])
    if message is None:  # a keras.* module of ours is accepted: only non-Keras ones are refused
        Model.from_config(config, seed=0)
        return
    with pytest.raises(ConfigError) as err:
        Model.from_config(config, seed=0)
    assert err.value.loc == (*LOC, *loc)
    assert message in err.value.message


@pytest.mark.parametrize(
    ("layer", "shape", "loc", "message"),
    [
        (("Conv2D", {"filters": 2, "kernel_size": 2,
                     "kernel_regularizer": "orthogonal_regularizer"}),
         [None, 4, 4, 1], ("kernel_regularizer",), "rank-2 weights only"),
        (("Dense", {"units": 1, "kernel_regularizer": {
            "class_name": "OrthogonalRegularizer", "config": {"mode": "columns"}}}),
         [None, 4], ("kernel_regularizer", "config"), "at least two columns"),
        (("PReLU", {"alpha_constraint": {"class_name": "UnitNorm", "config": {"axis": 1}}}),
         [None, 4], ("alpha_constraint", "config", "axis"), "out of range"),
        (("ActivityRegularization", {"l1": -1.0}), [None, 4], ("l1",), ">= 0.0"),
        (("ActivityRegularization", {"activity_regularizer": "l2"}), [None, 4],
         ("activity_regularizer",), "leave it null"),
        (("AlphaDropout", {"rate": 1.0}), [None, 4], ("rate",), "< 1.0"),
        (("AlphaDropout", {"rate": 0.1, "noise_shape": [None, 3]}), [None, 4],
         ("noise_shape", 1), "input's size 4"),
        (("AlphaDropout", {"rate": 0.1, "noise_shape": [None]}), [None, 4],
         ("noise_shape",), "one entry per input dimension"),
        (("AlphaDropout", {"rate": 0.1, "noise_shape": "all"}), [None, 4],
         ("noise_shape",), "list of integers"),
        (("SpatialDropout3D", {"rate": 0.1}), [None, 2, 2, 2], (), "rank 5"),
    ],
)  # fmt: skip
def test_bad_layer_configs_name_the_field(
    layer: tuple[str, dict[str, Any]], shape: list[Any], loc: tuple[Any, ...], message: str
) -> None:
    assert_refused(layer, shape, loc, message)
