"""Regularizers and constraints on the recurrent layers, the wrappers, the transposed, depthwise
and separable convolutions, EinsumDense and MultiHeadAttention, against Keras 3 on its torch
backend: fits whose loss carries the penalties and whose weights are projected after every step
(History, evaluate, final weights), each layer's added losses against Keras's `layer.losses`
after a call (in Keras's order), constraints reaching the weights Keras gives them to, and configs
both ways. tests/engine/test_regularizers.py does the same for the layers converted first."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from app.engine.config.errors import ConfigError
from app.engine.layers import Layer
from app.engine.models.model import Model
from app.engine.training.fit_args import FitArgs
from tests.engine.test_attention_layers import build_ours, set_keras_weights
from tests.support.keras_fit import (
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

L2 = {"class_name": "L2", "config": {"l2": 0.02}}
L1 = {"class_name": "L1", "config": {"l1": 0.01}}
L1L2 = {"class_name": "L1L2", "config": {"l1": 0.003, "l2": 0.004}}


def _max_norm(value: float, axis: Any = 0) -> dict[str, Any]:
    return {"class_name": "MaxNorm", "config": {"max_value": value, "axis": axis}}


def _wrapped(class_name: str, **config: Any) -> dict[str, Any]:
    return {"module": "keras.layers", "class_name": class_name, "config": config}


# -- fits ---------------------------------------------------------------------------------------
LSTM = [
    ("LSTM", {"units": 5, "kernel_regularizer": L2, "recurrent_regularizer": L1L2,
              "bias_regularizer": L1, "recurrent_constraint": _max_norm(0.3),
              "bias_initializer": "random_normal"}),
    ("Dense", {"units": 3, "activation": "softmax"}),
]  # fmt: skip
# With a mask Keras's LSTM runs its cell (the bias added last), and GRU without reset_after too.
MASKED_RNN = [
    ("Masking", {"mask_value": 0.0}),
    ("LSTM", {"units": 4, "return_sequences": True, "kernel_regularizer": "l1",
              "recurrent_regularizer": L2, "activity_regularizer": L1L2,
              "kernel_constraint": _max_norm(0.25), "recurrent_constraint": "unit_norm",
              "bias_constraint": "non_neg"}),
    ("GRU", {"units": 3, "reset_after": False, "bias_regularizer": "l2",
             "recurrent_constraint": {"class_name": "MinMaxNorm",
                                      "config": {"min_value": 0.2, "max_value": 0.7}}}),
    ("Dense", {"units": 3, "activation": "softmax"}),
]  # fmt: skip
BIDIRECTIONAL = [
    ("Bidirectional", {
        "activity_regularizer": L1L2,
        "layer": _wrapped("GRU", units=3, return_sequences=True, kernel_regularizer=L2,
                          recurrent_regularizer="l1", activity_regularizer="l2",
                          kernel_constraint=_max_norm(0.45), bias_constraint="non_neg",
                          bias_initializer="random_normal")}),
    ("Bidirectional", {
        "merge_mode": "sum",
        "layer": _wrapped("SimpleRNN", units=2, recurrent_regularizer=L2,
                          recurrent_constraint="unit_norm", bias_regularizer="l1")}),
    ("Dense", {"units": 3, "activation": "softmax"}),
]  # fmt: skip
CONVOLUTIONS = [
    ("Conv2DTranspose", {"filters": 3, "kernel_size": 2, "strides": 2, "activation": "tanh",
                         "kernel_regularizer": L2, "bias_regularizer": "l1",
                         "activity_regularizer": L1, "bias_constraint": "non_neg",
                         "kernel_constraint": _max_norm(0.08, [0, 1, 2]),
                         "bias_initializer": "random_normal"}),
    ("SeparableConv2D", {"filters": 4, "kernel_size": 3, "depth_multiplier": 2,
                         "activation": "relu", "depthwise_regularizer": L2,
                         "pointwise_regularizer": L1L2, "bias_regularizer": "l2",
                         "activity_regularizer": "l1",
                         "depthwise_constraint": _max_norm(0.15, [0, 1]),
                         "pointwise_constraint": {"class_name": "UnitNorm",
                                                  "config": {"axis": 2}},
                         "bias_constraint": "non_neg"}),
    ("DepthwiseConv2D", {"kernel_size": 2, "depthwise_regularizer": "l1",
                         "bias_regularizer": L2, "depthwise_constraint": _max_norm(0.15, [0, 1]),
                         "bias_constraint": {"class_name": "MinMaxNorm",
                                             "config": {"max_value": 0.1, "rate": 0.5}}}),
    ("Flatten", {}),
    ("Dense", {"units": 3, "activation": "softmax"}),
]  # fmt: skip
EINSUM = [
    ("EinsumDense", {"equation": "abc,cd->abd", "output_shape": [6, 4], "bias_axes": "d",
                     "activation": "tanh", "kernel_regularizer": L2, "bias_regularizer": L1,
                     "activity_regularizer": L1L2, "kernel_constraint": _max_norm(0.5),
                     "bias_constraint": "non_neg", "bias_initializer": "random_normal"}),
    # Keras runs a TimeDistributed layer's `call` directly: its activity_regularizer never counts.
    ("TimeDistributed", {"activity_regularizer": "l2",
                         "layer": _wrapped("Dense", units=3, kernel_regularizer="l1",
                                           activity_regularizer="l2",
                                           kernel_constraint="unit_norm")}),
    ("Flatten", {}),
    ("EinsumDense", {"equation": "ab,bc->ac", "output_shape": 3, "bias_axes": "c",
                     "activation": "softmax",
                     "kernel_regularizer": {"class_name": "OrthogonalRegularizer",
                                            "config": {"factor": 0.05}},
                     "bias_constraint": {"class_name": "MinMaxNorm",
                                         "config": {"min_value": 0.1, "max_value": 0.3}}}),
]  # fmt: skip

RNG = np.random.default_rng(13)
X_SEQ = RNG.normal(size=(70, 6, 4)).astype(np.float32)
X_MASKED = X_SEQ.copy()
X_MASKED[::3, 4:] = 0.0  # every third row loses its last two steps
X_MASKED[1::5, :2] = 0.0  # and some lose their first two
X_IMAGE = RNG.normal(size=(70, 3, 3, 2)).astype(np.float32)
Y3 = RNG.integers(0, 3, size=(70,)).astype(np.float32)
ADAM = {"optimizer": {"class_name": "Adam", "config": {"learning_rate": 0.02}},
        "loss": "sparse_categorical_crossentropy", "metrics": ["acc"]}  # fmt: skip
SGD = {"optimizer": {"class_name": "SGD", "config": {"learning_rate": 0.1, "momentum": 0.5}},
       "loss": "sparse_categorical_crossentropy", "metrics": ["acc"]}  # fmt: skip
FITS = {
    "lstm-adam": (LSTM, X_SEQ, ADAM),
    "lstm-sgd": (LSTM, X_SEQ, SGD),
    "masked-rnn-adam": (MASKED_RNN, X_MASKED, ADAM),
    "bidirectional-adam": (BIDIRECTIONAL, X_SEQ, ADAM),
    "bidirectional-sgd": (BIDIRECTIONAL, X_SEQ, SGD),
    "convolutions-adam": (CONVOLUTIONS, X_IMAGE, ADAM),
    "convolutions-sgd": (CONVOLUTIONS, X_IMAGE, SGD),
    "einsum-adam": (EINSUM, X_SEQ, ADAM),
    "einsum-sgd": (EINSUM, X_SEQ, SGD),
}


@pytest.mark.parametrize("case", sorted(FITS))
def test_regularized_constrained_fit_matches_keras(keras: ModuleType, case: str) -> None:
    spec, x, compile_cfg = FITS[case]
    config = sequential(spec, [None, *x.shape[1:]])
    km, trainer = keras_and_ours(keras, config, compile_cfg, keras_seed=0)

    # 49 training rows in batches of 16 leave a last batch of 1 (activity penalties are divided
    # by the batch size).
    def fit(m: Any) -> Any:
        return m.fit(x, Y3, batch_size=16, epochs=4, shuffle=False, verbose=0,
                     validation_split=0.3)  # fmt: skip

    kh = fit(km)
    args = FitArgs(batch_size=16, epochs=4, shuffle=False, validation_split=0.3)
    history = trainer.fit(x, Y3, args=args)
    if case.startswith("bidirectional"):
        # Max-norm and unit-norm projections that bind make this fit discontinuous in its start
        # (a one-ulp move changes Keras's result by per cent): no drift to measure, so the
        # worst-case bound of its 12 steps (one step: the forward fan-ins and a batch of 49).
        drift = None
        floor = Tolerance.fit(steps=12, per_step=60 + 49 + 20, what="the layers")
    else:
        drift = measured_drift(keras, config, compile_cfg, fit=fit, keras_history=kh.history,
                               km=km, after=keras_evaluate(x, Y3, batch_size=25))  # fmt: skip
        floor = None
    assert_same_fit(history.history, kh.history, trainer, km, floor=floor, drift=drift)
    assert_same_evaluate(trainer, km, x, Y3, batch_size=25, floor=floor, drift=drift)


# -- each layer's losses and constraints after a call ------------------------------------------
def _keras_layer(keras: ModuleType, class_name: str, config: dict[str, Any]) -> Any:
    # A copy: Keras's wrappers take their `layer` entry out of the config they are given.
    entry = {"module": "keras.layers", "class_name": class_name, "config": config}
    return keras.layers.deserialize(json.loads(json.dumps(entry)))


def _same_losses(ours: Layer, theirs: Any) -> None:
    """Our added losses are Keras's `layer.losses`, one for one and in Keras's order."""
    got = [float(t.detach()) for t in ours.added_losses()]
    want = [float(t.detach()) for t in theirs.losses]
    assert len(got) == len(want)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)


def _same_projections(ours: Layer, theirs: Any) -> None:
    """After a step that touched every weight, ours are projected as Keras's constraints project
    the same weights (the constraint each variable carries in Keras), and some of them moved
    when the layer has constraints at all."""
    for _, tensor in ours.keras_weights():
        tensor.grad = torch.zeros_like(tensor)
    before = [t.detach().clone() for _, t in ours.keras_weights()]
    ours.apply_constraints()
    weights = theirs.trainable_weights
    assert len(weights) == len(before)
    for (name, got), variable in zip(ours.keras_weights(), weights, strict=True):
        want = variable.value if variable.constraint is None else variable.constraint(variable)
        np.testing.assert_allclose(
            got.detach().numpy(), np.asarray(want.detach().cpu()), rtol=1e-6, atol=1e-7,
            err_msg=name,
        )  # fmt: skip
    moved = [not torch.equal(b, t) for b, (_, t) in zip(before, ours.keras_weights(), strict=True)]
    assert any(moved) == ours.has_constraints


MHA_OPTIONS = {
    "kernel_regularizer": L2, "bias_regularizer": L1L2, "activity_regularizer": "l1",
    "kernel_constraint": _max_norm(0.3, [0, 1]), "bias_constraint": "non_neg",
    "bias_initializer": "random_normal",
}  # fmt: skip
MHA_CASES = {
    "self": ({"num_heads": 2, "key_dim": 3, **MHA_OPTIONS}, (3, 5, 4), (3, 5, 4)),
    "gate_cross": ({"num_heads": 2, "key_dim": 3, "use_gate": True, "output_shape": 6,
                    "kernel_regularizer": "l1", "activity_regularizer": L2,
                    "kernel_constraint": "unit_norm"}, (3, 4, 5), (3, 6, 7)),
    "no_bias": ({"num_heads": 1, "key_dim": 2, "use_bias": False, **MHA_OPTIONS},
                (2, 4, 5), (2, 3, 5)),
    "activity_only": ({"num_heads": 2, "key_dim": 2, "activity_regularizer": L1},
                      (2, 4, 5), (2, 4, 5)),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(MHA_CASES))
def test_multi_head_attention_losses_and_constraints_are_keras(
    keras: ModuleType, case: str
) -> None:
    config, q_shape, v_shape = MHA_CASES[case]
    rng = np.random.default_rng(5)
    query = torch.as_tensor(rng.normal(size=q_shape).astype(np.float32))
    value = torch.as_tensor(rng.normal(size=v_shape).astype(np.float32))
    theirs = _keras_layer(keras, "MultiHeadAttention", config)
    theirs(query, value)
    ours = build_ours("MultiHeadAttention", config, [(None, *q_shape[1:]), (None, *v_shape[1:]),
                                                     None])  # fmt: skip
    set_keras_weights(ours, theirs.get_weights())
    assert ours.has_added_losses and ours.activity_regularizer is None  # the projections' own
    ours([query, value, None])
    _same_losses(ours, theirs)
    _same_projections(ours, theirs)
    # The config both ways: ours is what Keras writes, and Keras reads it back to the same.
    written = json.loads(json.dumps(theirs.get_config()))
    mine = ours.get_config()
    for key in ("kernel_regularizer", "bias_regularizer", "activity_regularizer",
                "kernel_constraint", "bias_constraint"):  # fmt: skip
        assert mine[key] == written[key], key
    assert list(mine) == [k for k in written if k != "flash_attention"]
    again = _keras_layer(keras, "MultiHeadAttention", {**mine, "name": written["name"]})
    assert json.loads(json.dumps(again.get_config())) == written
    rebuilt = build_ours("MultiHeadAttention", written, [(None, *q_shape[1:]),
                                                        (None, *v_shape[1:]), None])  # fmt: skip
    assert rebuilt.get_config() == {**mine, "name": written["name"]}


LAYER_LEVEL = {
    "bidirectional": ("Bidirectional", BIDIRECTIONAL[0][1], (4, 6, 4)),
    "time_distributed": ("TimeDistributed", EINSUM[1][1], (4, 6, 4)),
    "lstm": ("LSTM", MASKED_RNN[1][1], (4, 6, 4)),
    "separable": ("SeparableConv2D", CONVOLUTIONS[1][1], (4, 6, 6, 3)),
}


@pytest.mark.parametrize("case", sorted(LAYER_LEVEL))
def test_layer_losses_and_constraints_are_keras(keras: ModuleType, case: str) -> None:
    class_name, config, shape = LAYER_LEVEL[case]
    x = torch.as_tensor(np.random.default_rng(3).normal(size=shape).astype(np.float32))
    theirs = _keras_layer(keras, class_name, config)
    theirs(x)
    ours = build_ours(class_name, config, (None, *shape[1:]))
    set_keras_weights(ours, theirs.get_weights())
    ours(x)
    _same_losses(ours, theirs)
    _same_projections(ours, theirs)


# -- configs --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "x"),
    [(LSTM, X_SEQ), (MASKED_RNN, X_SEQ), (BIDIRECTIONAL, X_SEQ), (CONVOLUTIONS, X_IMAGE),
     (EINSUM, X_SEQ)],
    ids=["lstm", "masked-rnn", "bidirectional", "convolutions", "einsum"],
)  # fmt: skip
def test_configs_round_trip_with_keras(keras: ModuleType, spec: Any, x: np.ndarray) -> None:
    km = keras.models.model_from_json(keras_json(sequential(spec, [None, *x.shape[1:]])))
    theirs = json.loads(km.to_json())
    ours = Model.from_config(theirs, seed=0).get_config()

    def options(config: dict[str, Any]) -> dict[str, Any]:
        found = {k: v for k, v in config.items() if k.endswith(("_regularizer", "_constraint"))}
        if "layer" in config:  # a wrapper: the wrapped layers' options too
            for key in ("layer", "backward_layer"):
                if key in config:
                    found[key] = options(config[key]["config"])
        return found

    for mine, keras_layer in zip(ours["config"]["layers"][1:], theirs["config"]["layers"][1:],
                                 strict=True):  # fmt: skip
        assert options(mine["config"]) == options(keras_layer["config"])
        # The same keys in Keras's order (Dense's quantization_config aside: not written here).
        keys = [[k for k in e["config"] if k != "quantization_config"] for e in (mine, keras_layer)]
        assert keys[0] == keys[1]
    again = keras.models.model_from_json(json.dumps(ours))
    assert json.loads(again.to_json()) == theirs


def test_a_projection_option_that_cannot_take_its_weight_names_the_field() -> None:
    # MultiHeadAttention's kernels are rank 3: an axis they lack is found when the projections
    # are built, and named at the layer's own key.
    config = {"num_heads": 2, "key_dim": 2,
              "kernel_constraint": {"class_name": "MaxNorm", "config": {"axis": 3}}}  # fmt: skip
    with pytest.raises(ConfigError) as err:
        build_ours("MultiHeadAttention", config, [(None, 4, 5), (None, 4, 5), None])
    assert err.value.loc == ("config", "kernel_constraint", "config", "axis")
    assert "out of range" in err.value.message
