"""Recurrent layers and Keras masks beyond the generic forward comparison (layer_cases/recurrent):
masked losses and metrics against Keras's evaluate, Masking, where masks flow and stop, seeded
dropout, the CUDA kernels' weight mapping, canonical configs Keras loads back, and config errors
that name the field."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from app.engine import losses
from app.engine import metrics as metrics_mod
from app.engine.config.errors import ConfigError, DataError
from app.engine.layers.recurrent import GRU, LSTM
from app.engine.losses import reduction as loss_utils
from app.engine.models.model import Model
from app.engine.training.compile import CompileSpec
from app.engine.training.fit_args import FitArgs
from app.engine.training.trainer import Trainer
from tests.engine.test_fit_recurrent_vs_keras import model_config, padded_ids
from tests.support.keras_json import keras_json

K = "keras.layers"
RNG = np.random.default_rng(7)
IDS = padded_ids(RNG, 40, 6, 8)
Y_CLASS = RNG.integers(0, 3, size=(40, 6)).astype(np.float32)
Y_REG = RNG.normal(size=(40, 6, 2)).astype(np.float32)
SW_STEPS = RNG.uniform(0.5, 2.0, size=(40, 6)).astype(np.float32)
EMBED = ("Embedding", {"input_dim": 8, "output_dim": 4, "mask_zero": True})
CLASSIFIER = [EMBED, ("LSTM", {"units": 5, "return_sequences": True}),
              ("Dense", {"units": 3, "activation": "softmax"})]  # fmt: skip
REGRESSOR = [EMBED, ("GRU", {"units": 4, "return_sequences": True, "reset_after": False}),
             ("TimeDistributed", {"layer": {"module": K, "class_name": "Dense",
                                            "config": {"units": 2}}})]  # fmt: skip


def _pair(keras: ModuleType, layers: Any, shape: list[Any]) -> tuple[Any, Model]:
    config = model_config(layers, shape)
    km = keras.models.model_from_json(keras_json(config))
    ours = Model.from_config(config, seed=0)
    ours.set_weights(km.get_weights())
    return km, ours


def _masked_results(
    model: Model, names: list[str], x: np.ndarray, y: np.ndarray, sw: np.ndarray | None
) -> dict[str, float]:
    """The loss (as Keras's tracker averages it, by batch size) and metrics of masked outputs,
    batch by batch, with update_masked, as the trainer is to call it."""
    shapes = {"y_true_shape": y.shape, "y_pred_shape": (*y.shape[:2], model.output_shape[-1])}
    found = {n: metrics_mod.get(n, ("metrics",), **shapes) for n in names}
    loss_fn = losses.SparseCategoricalCrossentropy()
    total = 0.0
    with torch.no_grad():
        for lo in range(0, len(x), 16):
            out, mask = model.forward_with_mask(torch.as_tensor(x[lo : lo + 16]))
            assert isinstance(out, torch.Tensor) and isinstance(mask, torch.Tensor)
            yb = torch.as_tensor(y[lo : lo + 16])
            w = None if sw is None else torch.as_tensor(sw[lo : lo + 16])
            if y.ndim == 2:
                total += float(loss_fn(yb, out, w, mask=mask)) * len(yb)
                if w is not None:
                    # Keras's loss multiplies the sample weights by its mask weights in place
                    # (apply_mask's `sample_weight *= float_mask`), so the weighted metrics
                    # after it see those: the trainer must pass them on the same way.
                    w = loss_utils.apply_mask(w, mask, loss_fn.reduction, out)
            for m in found.values():
                m.update_masked(yb, out, w, mask)
    return {"loss": total / len(x), **{n: float(m.result()) for n, m in found.items()}}


@pytest.mark.parametrize("weighted", [False, True])
def test_masked_loss_and_metrics_match_keras_evaluate(keras: ModuleType, weighted: bool) -> None:
    sw = SW_STEPS if weighted else None  # Keras's temporal weights, one per step
    names = ["sparse_categorical_accuracy", "sparse_categorical_crossentropy"]
    km, ours = _pair(keras, CLASSIFIER, [None, 6])
    km.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
               **({"weighted_metrics": names} if weighted else {"metrics": names}))  # fmt: skip
    theirs = km.evaluate(IDS, Y_CLASS, sample_weight=sw, batch_size=16, return_dict=True, verbose=0)
    for name, value in _masked_results(ours, names, IDS, Y_CLASS, sw).items():
        np.testing.assert_allclose(value, theirs[name], rtol=1e-6, err_msg=name)
    # The trainer masks the loss and the metrics, and folds the mask into weighted metrics'
    # weights as Keras's loss does.
    compile_cfg = {"loss": "sparse_categorical_crossentropy",
                   ("weighted_metrics" if weighted else "metrics"): names}  # fmt: skip
    trainer = Trainer(ours, CompileSpec.parse(compile_cfg))
    got = trainer.evaluate(IDS, Y_CLASS, sample_weight=sw, batch_size=16)
    assert sorted(got) == sorted(theirs)
    for name, value in theirs.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-6, err_msg=name)


def test_regression_metrics_under_a_mask_match_keras(keras: ModuleType) -> None:
    # Keras's RootMeanSquaredError is a Mean of squared errors, not a MeanMetricWrapper: it
    # ignores the mask while mse and mae count only the unmasked steps.
    names = ["mae", "mse", "root_mean_squared_error", "cosine_similarity"]
    km, ours = _pair(keras, REGRESSOR, [None, 6])
    km.compile(optimizer="adam", loss="mae", metrics=names)
    theirs = km.evaluate(IDS, Y_REG, batch_size=16, return_dict=True, verbose=0)
    results = _masked_results(ours, names, IDS, Y_REG, None)
    for name in names:
        np.testing.assert_allclose(results[name], theirs[name], rtol=1e-6, err_msg=name)


@pytest.mark.parametrize(
    "reduction", ["sum_over_batch_size", "sum", "mean", "mean_with_sample_weight"]
)
@pytest.mark.parametrize("weighted", [False, True])
def test_loss_reductions_apply_the_mask_as_keras(
    keras: ModuleType, reduction: str, weighted: bool
) -> None:
    from keras.src.backend import set_keras_mask

    rng = np.random.default_rng(3)
    y_true, y_pred = rng.normal(size=(2, 4, 5, 3)).astype(np.float32)
    mask = rng.uniform(size=(4, 5)) > 0.4
    mask[2] = False  # a fully masked sample
    sw = rng.uniform(0.1, 2.0, size=(4, 5)).astype(np.float32) if weighted else None
    theirs_pred = torch.as_tensor(y_pred)
    set_keras_mask(theirs_pred, torch.as_tensor(mask))
    theirs = keras.losses.MeanSquaredError(reduction=reduction)(y_true, theirs_pred, sw)
    ours = losses.MeanSquaredError(reduction=reduction)(
        torch.as_tensor(y_true),
        torch.as_tensor(y_pred),
        None if sw is None else torch.as_tensor(sw),
        mask=torch.as_tensor(mask),
    )
    np.testing.assert_allclose(ours.numpy(), np.asarray(theirs), rtol=1e-6)
    nothing = losses.MeanSquaredError()(
        torch.as_tensor(y_true), torch.as_tensor(y_pred), mask=torch.zeros(4, 5, dtype=torch.bool)
    )
    assert float(nothing) == 0.0  # every entry masked: 0, not NaN, as Keras's divide_no_nan


def test_per_sample_weights_with_a_per_step_mask_are_refused() -> None:
    # Keras's torch backend fails here too (it multiplies the (N,) weights by the (N, T) mask
    # in place); per-step weights of shape (N, T) are what works.
    with pytest.raises(DataError, match="one weight per masked entry"):
        losses.MeanSquaredError()(
            torch.zeros(4, 5, 1), torch.ones(4, 5, 1), torch.ones(4), mask=torch.ones(4, 5) > 0
        )


def test_masking_layer_matches_keras(keras: ModuleType) -> None:
    gru = {"module": K, "class_name": "GRU", "config": {"units": 2}}
    layers = [("Masking", {"mask_value": -1.0}),
              ("LSTM", {"units": 3, "return_sequences": True}),
              ("Bidirectional", {"layer": gru, "merge_mode": "ave"})]  # fmt: skip
    km, ours = _pair(keras, layers, [None, 6, 3])
    x = np.random.default_rng(2).normal(size=(8, 6, 3)).astype(np.float32)
    x[0, 4:] = -1.0
    x[1, :2] = -1.0
    x[2, 3] = -1.0
    x[3] = -1.0
    x[4, 1, 0] = -1.0  # one feature equal to mask_value does not mask the step
    with torch.no_grad():
        got = ours(torch.as_tensor(x))
        _, mask = Model.from_config(
            model_config(layers[:2], [None, 6, 3]), seed=0
        ).forward_with_mask(torch.as_tensor(x))
    np.testing.assert_allclose(got.numpy(), km.predict(x, verbose=0), rtol=1e-6, atol=1e-7)
    assert isinstance(mask, torch.Tensor)
    np.testing.assert_array_equal(mask.numpy(), np.any(x != -1.0, axis=-1))


@pytest.mark.parametrize(
    ("layers", "passes"),
    [
        ([("LSTM", {"units": 2, "return_sequences": True})], True),
        ([("LSTM", {"units": 2})], False),
        ([("GRU", {"units": 2, "return_sequences": True}), ("Dense", {"units": 2}),
          ("Dropout", {"rate": 0.1}), ("LayerNormalization", {})], True),
        ([("Bidirectional", {"layer": {"class_name": "SimpleRNN",
                                       "config": {"units": 2, "return_sequences": True}}})], True),
        ([("Bidirectional", {"layer": {"class_name": "SimpleRNN", "config": {"units": 2}}})],
         False),
        ([("TimeDistributed", {"layer": {"class_name": "Dense", "config": {"units": 2}}})], True),
        ([("GlobalAveragePooling1D", {})], False),
        ([("Flatten", {})], False),
        ([("Conv1D", {"filters": 2, "kernel_size": 1})], False),
    ],
)  # fmt: skip
def test_where_masks_flow_and_stop(layers: Any, passes: bool) -> None:
    model = Model.from_config(model_config([EMBED, *layers], [None, 6]), seed=0)
    _, mask = model.forward_with_mask(torch.as_tensor(IDS[:4]))
    if passes:
        assert isinstance(mask, torch.Tensor)
        np.testing.assert_array_equal(mask.numpy(), IDS[:4] != 0)
    else:
        assert mask is None


def test_softmax_refuses_a_mask_it_cannot_broadcast() -> None:
    model = Model.from_config(model_config([EMBED, ("Softmax", {})], [None, 6]), seed=0)
    with pytest.raises(DataError, match="does not broadcast"):
        model(torch.as_tensor(IDS[:4]))


DROPOUT_MODEL = [
    ("LSTM", {"units": 4, "dropout": 0.3, "recurrent_dropout": 0.2, "return_sequences": True}),
    ("GRU", {"units": 3, "dropout": 0.2, "recurrent_dropout": 0.3, "reset_after": False,
             "return_sequences": True}),
    ("Bidirectional", {"layer": {"class_name": "SimpleRNN",
                                 "config": {"units": 2, "dropout": 0.4,
                                            "recurrent_dropout": 0.1}}}),
    ("Dense", {"units": 1}),
]  # fmt: skip


def _dropout_fit(seed: int) -> tuple[list[float], list[np.ndarray]]:
    x = np.random.default_rng(0).normal(size=(32, 5, 3)).astype(np.float32)
    y = np.random.default_rng(1).normal(size=(32, 1)).astype(np.float32)
    model = Model.from_config(model_config(DROPOUT_MODEL, [None, 5, 3]), seed=0)
    trainer = Trainer(model, CompileSpec.parse({"optimizer": "adam", "loss": "mse"}))
    history = trainer.fit(x, y, args=FitArgs(batch_size=8, epochs=2, shuffle=False, seed=seed))
    return history.history["loss"], trainer.model.get_weights()


def test_dropout_in_training_is_seeded_and_reproducible() -> None:
    loss_a, weights_a = _dropout_fit(3)
    loss_b, weights_b = _dropout_fit(3)
    loss_c, _ = _dropout_fit(4)
    assert loss_a == loss_b
    assert all(np.array_equal(a, b) for a, b in zip(weights_a, weights_b, strict=True))
    assert loss_a != loss_c
    model = Model.from_config(model_config(DROPOUT_MODEL, [None, 5, 3]), seed=0)
    x = torch.randn(6, 5, 3)
    with torch.no_grad():
        model.set_generator(torch.Generator().manual_seed(5))
        first = model(x, training=True)
        model.set_generator(torch.Generator().manual_seed(5))
        again = model(x, training=True)
        assert torch.equal(first, again)
        assert not torch.equal(first, model(x, training=False))


def test_recurrent_dropout_draws_one_mask_per_gate_as_keras() -> None:
    # Keras switches to its per-gate cell (implementation 1) when recurrent_dropout is set.
    layers = Model.from_config(model_config(DROPOUT_MODEL[:2], [None, 5, 3]), seed=0).layers
    lstm, gru = layers[0], layers[1]
    assert isinstance(lstm, LSTM) and isinstance(gru, GRU)
    masks = lstm._masks((6, 3), torch.zeros(1), 0.5)
    assert len(masks) == 4 and all(set(m.unique().tolist()) <= {0.0, 2.0} for m in masks)
    assert len(gru._masks((6, 3), torch.zeros(1), 0.5)) == 3


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_cuda_kernels_take_keras_weights(kind: str, go_backwards: bool) -> None:
    # On CUDA the layers hand the sequence to torch's fused LSTM/GRU, as Keras does; the weight
    # mapping (gate order, bias split) is checked here on the CPU against the step loop.
    cfg = {"units": 4, "return_sequences": True, "go_backwards": go_backwards}
    model = Model.from_config(model_config([(kind, cfg)], [None, 7, 3]), seed=0)
    layer = model.layers[0]
    assert isinstance(layer, LSTM | GRU)
    with torch.no_grad():
        for w in layer.parameters():
            w.normal_(0.0, 0.5)
        x = torch.randn(5, 7, 3)
        np.testing.assert_allclose(
            layer.cudnn(x, None).numpy(), layer(x).numpy(), rtol=1e-5, atol=1e-6
        )


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_forward_matches_keras_on_cuda(keras: ModuleType) -> None:
    layers = [("LSTM", {"units": 8, "return_sequences": True}), ("GRU", {"units": 4})]
    km, ours = _pair(keras, layers, [None, 9, 3])
    x = np.random.default_rng(0).normal(size=(16, 9, 3)).astype(np.float32)
    with torch.no_grad():
        got = ours.to("cuda")(torch.as_tensor(x, device="cuda")).cpu().numpy()
    np.testing.assert_allclose(got, km.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


def test_keras_loads_our_canonical_config(keras: ModuleType) -> None:
    layers = [EMBED, ("Masking", {"mask_value": 0.0}),
              ("Bidirectional", {"layer": {"class_name": "LSTM",
                                           "config": {"units": 3, "return_sequences": True}},
                                 "merge_mode": "sum"}),
              ("TimeDistributed", {"layer": {"class_name": "Dense", "config": {"units": 2}}}),
              ("GRU", {"units": 2, "reset_after": False, "go_backwards": True}),
              ("Dense", {"units": 1})]  # fmt: skip
    ours = Model.from_config(model_config(layers, [None, 6]), seed=4)
    km = keras.models.model_from_json(json.dumps(ours.get_config()))
    km.set_weights(ours.get_weights())
    with torch.no_grad():
        got = ours(torch.as_tensor(IDS)).numpy()
    np.testing.assert_allclose(got, km.predict(IDS, verbose=0), rtol=1e-6, atol=1e-7)
    assert Model.from_config(ours.get_config(), seed=4).get_config() == ours.get_config()
    assert ours.summary()["total_params"] == km.count_params()


def test_unknown_timesteps_run_at_any_length(keras: ModuleType) -> None:
    km, ours = _pair(keras, [("GRU", {"units": 3, "return_sequences": True}),
                             ("LSTM", {"units": 2})], [None, None, 3])  # fmt: skip
    for steps in (2, 9):
        x = np.random.default_rng(steps).normal(size=(4, steps, 3)).astype(np.float32)
        with torch.no_grad():
            got = ours(torch.as_tensor(x)).numpy()
        np.testing.assert_allclose(got, km.predict(x, verbose=0), rtol=1e-6, atol=1e-7)


def test_initial_weights_follow_keras() -> None:
    model = Model.from_config(
        model_config([("LSTM", {"units": 6, "return_sequences": True}), ("GRU", {"units": 5})],
                     [None, 4, 3]), seed=0,
    )  # fmt: skip
    kernel, recurrent, bias, _, gru_recurrent, gru_bias = model.get_weights()
    assert kernel.shape == (3, 24) and recurrent.shape == (6, 24) and gru_bias.shape == (2, 15)
    np.testing.assert_array_equal(bias, np.r_[np.zeros(6), np.ones(6), np.zeros(12)])
    # Orthogonal on (units, gates * units): the rows are orthonormal.
    np.testing.assert_allclose(recurrent @ recurrent.T, np.eye(6), atol=1e-5)
    np.testing.assert_allclose(gru_recurrent @ gru_recurrent.T, np.eye(5), atol=1e-5)


def _lstm(**config: Any) -> dict[str, Any]:
    return model_config([("LSTM", {"units": 2, **config})], [None, 4, 3])


LOC = ("config", "layers", 1, "config")


@pytest.mark.parametrize(
    ("config", "loc", "text"),
    [
        (_lstm(return_state=True), (*LOC, "return_state"), "exactly one output"),
        (_lstm(stateful=True), (*LOC, "stateful"), "from one batch to the next"),
        (_lstm(dropout=1.0), (*LOC, "dropout"), "[0, 1)"),
        (_lstm(recurrent_dropout=-0.1), (*LOC, "recurrent_dropout"), ">= 0"),
        (_lstm(units=0), (*LOC, "units"), ">= 1"),
        (_lstm(use_cudnn="yes"), (*LOC, "use_cudnn"), "'auto', true or false"),
        (_lstm(use_cudnn=True, recurrent_dropout=0.1), (*LOC, "use_cudnn"), "recurrent_dropout"),
        (_lstm(implementation=1), (*LOC, "implementation"), "only 2"),
        (_lstm(recurrent_regularizer={"class_name": "L2", "config": {"l2": -1}}),
         (*LOC, "recurrent_regularizer", "config", "l2"), ">= 0.0"),
        (_lstm(recurrent_constraint={"class_name": "MaxNorm", "config": {"axis": 2}}),
         (*LOC, "recurrent_constraint", "config", "axis"), "out of range"),
        (_lstm(bias_regularizer="orthogonal_regularizer"), (*LOC, "bias_regularizer"),
         "rank-2 weights only"),
        (_lstm(recurrent_initializer="identityy"), (*LOC, "recurrent_initializer"),
         "unknown initializer"),
        (_lstm(bias_initializer="orthogonal"), (*LOC, "bias_initializer"), "rank 2"),
        (_lstm(recurrent_activation="nope"), (*LOC, "recurrent_activation"),
         "unknown activation"),
        (_lstm(time_major=False), (*LOC, "time_major"), "unknown argument"),
        (model_config([("LSTM", {"units": 2, "unroll": True})], [None, None, 3]),
         (*LOC, "unroll"), "known number of timesteps"),
        (model_config([("GRU", {"units": 2})], [None, 3]), LOC, "(batch, timesteps, features)"),
        (model_config([("GRU", {"units": 2, "reset_after": False, "use_cudnn": True})],
                      [None, 4, 3]), (*LOC, "use_cudnn"), "reset_after"),
        (model_config([("Bidirectional", {"layer": {"class_name": "LSTM", "config": {"units": 2}},
                                          "merge_mode": None})], [None, 4, 3]),
         (*LOC, "merge_mode"), "exactly one output"),
        (model_config([("Bidirectional", {"layer": {"class_name": "LSTM", "config": {"units": 2}},
                                          "merge_mode": "max"})], [None, 4, 3]),
         (*LOC, "merge_mode"), "must be one of"),
        (model_config([("Bidirectional", {"layer": {"class_name": "Dense",
                                                    "config": {"units": 2}}})], [None, 4, 3]),
         (*LOC, "layer", "class_name"), "SimpleRNN, LSTM or GRU"),
        (model_config([("Bidirectional", {"layer": {"class_name": "LSTM", "config": {
                                              "units": 2, "go_backwards": True}}})],
                      [None, 4, 3]),
         (*LOC, "backward_layer", "config", "go_backwards"), "must differ"),
        (model_config([("Bidirectional", {"layer": {"class_name": "LSTM", "config": {"units": 2}},
                                          "merge_mode": "sum",
                                          "backward_layer": {"class_name": "GRU", "config": {
                                              "units": 3, "go_backwards": True}}})],
                      [None, 4, 3]), (*LOC, "merge_mode"), "same units"),
        (model_config([("Bidirectional", {"layer": {"class_name": "LSTM",
                                                    "config": {"units": -2}}})], [None, 4, 3]),
         (*LOC, "layer", "config", "units"), ">= 1"),
        (model_config([("TimeDistributed", {"layer": {"class_name": "Dense",
                                                      "config": {"units": 2}}})], [None, 3]),
         LOC, "at least 3"),
        (model_config([("TimeDistributed", {"layer": {"class_name": "Dense",
                                                      "config": {"activation": "x"}}})],
                      [None, 4, 3]), (*LOC, "layer", "config", "units"), "is required"),
        (model_config([("TimeDistributed", {})], [None, 4, 3]), (*LOC, "layer"), "is required"),
        (model_config([("Masking", {"mask_value": "zero"})], [None, 4, 3]),
         (*LOC, "mask_value"), "must be a number"),
    ],
)  # fmt: skip
def test_config_errors_name_the_field(config: dict[str, Any], loc: Any, text: str) -> None:
    with pytest.raises(ConfigError) as info:
        Model.from_config(config, seed=0)
    assert info.value.loc == loc
    assert text in info.value.message


def test_the_trainer_refuses_per_sample_weights_for_a_masked_sequence_output() -> None:
    ours = Model.from_config(model_config(CLASSIFIER, [None, 6]), seed=0)
    trainer = Trainer(ours, CompileSpec.parse({"loss": "sparse_categorical_crossentropy"}))
    with pytest.raises(DataError, match="one weight per masked entry") as info:
        trainer.evaluate(IDS, Y_CLASS, sample_weight=np.ones(len(IDS), np.float32))
    assert info.value.loc == ("sample_weight",)
