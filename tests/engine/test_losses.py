"""Losses against Keras 3 (torch backend): values, gradients, names, configs and label checks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from app.engine import losses
from app.engine.config.errors import ConfigError, DataError
from tests.support.loss_checks import assert_bad_config_names, assert_check_labels

RTOL, ATOL = 1e-6, 1e-7
N = 7
RNG = np.random.default_rng(1234)


def _probs(shape: tuple[int, ...]) -> np.ndarray:
    p = RNG.uniform(0.0, 1.0, shape).astype(np.float32)
    flat = p.reshape(-1)
    flat[0], flat[1] = 0.0, 1.0  # the clipping extremes
    return p


def _binary(shape: tuple[int, ...]) -> np.ndarray:
    y = RNG.integers(0, 2, shape).astype(np.float32)
    flat = y.reshape(-1)
    flat[0], flat[1] = 1.0, 0.0  # worst cases against p = 0 and p = 1
    return y


def _onehot(n: int, c: int) -> np.ndarray:
    return np.eye(c, dtype=np.float32)[RNG.integers(0, c, n)]


def _weights(shape: int | tuple[int, ...]) -> np.ndarray:
    w = RNG.uniform(0.0, 2.0, shape).astype(np.float32)
    w.reshape(-1)[2] = 0.0
    return w


def _keras_loss(keras: Any, identifier: Any, y: np.ndarray, p: np.ndarray) -> Any:
    from keras.src.trainers.compile_utils import get_loss

    return get_loss(identifier, keras.ops.convert_to_tensor(y), keras.ops.convert_to_tensor(p))


def _compare(keras: Any, identifier: Any, y: np.ndarray, p: np.ndarray, w: Any = None) -> None:
    ours = losses.get(identifier, ("loss",))
    theirs = _keras_loss(keras, identifier, y, p)
    assert ours.name == theirs.name
    sw = None if w is None else torch.tensor(w)
    got = ours(torch.tensor(y), torch.tensor(p), sw)
    want = theirs(y, p, sample_weight=w)
    assert got.shape == ()
    np.testing.assert_allclose(got.numpy(), np.asarray(want), rtol=RTOL, atol=ATOL)
    # Per-sample values before the reduction, too.
    values = ours.call(torch.tensor(y), torch.tensor(p))
    want_values = theirs.call(keras.ops.convert_to_tensor(y), keras.ops.convert_to_tensor(p))
    np.testing.assert_allclose(values.numpy(), np.asarray(want_values), rtol=RTOL, atol=ATOL)


BCE_CASES = [
    ((N,), (N, 1)),
    ((N, 1), (N, 1)),
    ((N, 3), (N, 3)),
    ((N, 4, 2), (N, 4, 2)),
]


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize(("y_shape", "p_shape"), BCE_CASES)
def test_binary_crossentropy(keras, y_shape, p_shape, from_logits, smoothing, weighted):
    y = _binary(y_shape)
    p = (RNG.normal(0, 4, p_shape).astype(np.float32)) if from_logits else _probs(p_shape)
    cfg = {"from_logits": from_logits, "label_smoothing": smoothing}
    # Per-timestep values need per-timestep weights (Keras refuses (N,) there).
    w = _weights(p_shape[:-1] if len(p_shape) > 2 else N) if weighted else None
    _compare(keras, {"class_name": "BinaryCrossentropy", "config": cfg}, y, p, w)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("from_logits", [False, True])
def test_categorical_crossentropy(keras, from_logits, smoothing, weighted):
    y = _onehot(N, 4)
    p = RNG.normal(0, 3, (N, 4)).astype(np.float32) if from_logits else _probs((N, 4)) * 2
    p[3] = [0.0, 1.0, 0.0, 0.0]  # exact one-hot prediction: log(1 - eps) and log(eps)
    cfg = {"from_logits": from_logits, "label_smoothing": smoothing}
    _compare(keras, {"class_name": "CategoricalCrossentropy", "config": cfg}, y, p,
             _weights(N) if weighted else None)  # fmt: skip


@pytest.mark.parametrize("from_logits", [False, True])
def test_categorical_crossentropy_on_another_axis(keras, from_logits):
    # Keras smooths with the *last* dimension as the class count even when axis is 1.
    y = np.moveaxis(_onehot(N * 2, 3).reshape(N, 2, 3), 2, 1).copy()
    p = RNG.uniform(0.05, 1.0, (N, 3, 2)).astype(np.float32)
    cfg = {"from_logits": from_logits, "label_smoothing": 0.1, "axis": 1}
    _compare(keras, {"class_name": "CategoricalCrossentropy", "config": cfg}, y, p)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("y_shape", [(N,), (N, 1)])
def test_sparse_categorical_crossentropy(keras, y_shape, from_logits, weighted):
    y = RNG.integers(0, 5, y_shape).astype(np.float32)
    p = RNG.normal(0, 3, (N, 5)).astype(np.float32) if from_logits else _probs((N, 5)) * 3
    p[4] = 0.0
    p[4, 2] = 1.0
    cfg = {"from_logits": from_logits}
    _compare(keras, {"class_name": "SparseCategoricalCrossentropy", "config": cfg}, y, p,
             _weights(N) if weighted else None)  # fmt: skip


def test_sparse_categorical_crossentropy_per_timestep(keras):
    y = RNG.integers(0, 4, (N, 3)).astype(np.float32)
    p = _probs((N, 3, 4))
    _compare(keras, "sparse_categorical_crossentropy", y, p)
    _compare(keras, "sparse_categorical_crossentropy", y, p, RNG.uniform(0, 1, (N, 3)))


REGRESSION_CASES = [
    ((N,), (N, 1), (N,)),
    ((N, 1), (N,), None),
    ((N, 2), (N, 2), (N, 1)),
    ((N, 3, 2), (N, 3, 2), (N, 3)),
]


REGRESSION_IDS = ["mse", "MSE", "mean_squared_error", "MeanSquaredError",
                  "mae", "MAE", "mean_absolute_error", "MeanAbsoluteError"]  # fmt: skip


@pytest.mark.parametrize("identifier", REGRESSION_IDS)
@pytest.mark.parametrize(("y_shape", "p_shape", "w_shape"), REGRESSION_CASES)
def test_regression_losses(keras, identifier, y_shape, p_shape, w_shape):
    y = RNG.normal(0, 2, y_shape).astype(np.float32)
    p = RNG.normal(0, 2, p_shape).astype(np.float32)
    _compare(keras, identifier, y, p)
    if w_shape is not None:
        _compare(keras, identifier, y, p, RNG.uniform(0, 2, w_shape).astype(np.float32))


@pytest.mark.parametrize("reduction", ["sum", "mean", "mean_with_sample_weight"])
def test_reductions(keras, reduction):
    y, p, w = _binary((N, 1)), _probs((N, 1)), _weights(N)
    cfg = {"class_name": "BinaryCrossentropy", "config": {"reduction": reduction}}
    _compare(keras, cfg, y, p)
    _compare(keras, cfg, y, p, w)


def test_sum_over_batch_size_divides_by_count_not_weights():
    loss = losses.get("mse", ("loss",))
    y, p = torch.tensor([[1.0], [2.0]]), torch.zeros((2, 1))
    got = loss(y, p, torch.tensor([1.0, 0.0]))
    assert got.item() == pytest.approx(0.5)  # keras-semantics 2.1 worked example


def test_extremes_match_keras_caps():
    bce = losses.get("binary_crossentropy", ("loss",))
    values = bce.call(torch.tensor([[1.0], [0.0]]), torch.tensor([[0.0], [1.0]]))
    np.testing.assert_allclose(values.numpy(), [16.118095, 15.942385], rtol=1e-6)


@pytest.mark.parametrize(
    ("identifier", "p"),
    [("binary_crossentropy", [[0.0], [1.0], [0.3], [1e-9]]),
     ("categorical_crossentropy", [[0.0, 1.0], [1.0, 0.0], [0.2, 0.6], [1e-9, 2.0]]),
     ("sparse_categorical_crossentropy", [[0.0, 1.0], [1.0, 0.0], [0.2, 0.6], [1e-9, 2.0]])],
)  # fmt: skip
def test_gradients_match_keras(keras, identifier, p):
    p_np = np.asarray(p, dtype=np.float32)
    if identifier == "binary_crossentropy":
        y = np.array([[1.0], [0.0], [1.0], [0.0]], dtype=np.float32)
    elif identifier == "categorical_crossentropy":
        y = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=np.float32)
    else:
        y = np.array([0, 0, 1, 1], dtype=np.float32)
    w = np.array([1.0, 0.5, 2.0, 1.0], dtype=np.float32)
    ours_p = torch.tensor(p_np, requires_grad=True)
    losses.get(identifier, ("loss",))(torch.tensor(y), ours_p, torch.tensor(w)).backward()
    theirs_p = torch.tensor(p_np, requires_grad=True)
    _keras_loss(keras, identifier, y, p_np)(torch.tensor(y), theirs_p, torch.tensor(w)).backward()
    assert ours_p.grad is not None and theirs_p.grad is not None
    np.testing.assert_allclose(ours_p.grad.numpy(), theirs_p.grad.numpy(), rtol=RTOL, atol=ATOL)


# -- identifiers, names and configs ------------------------------------------------------------


@pytest.mark.parametrize(
    ("identifier", "cls", "name"),
    [("mse", losses.MeanSquaredError, "mse"),
     ("MSE", losses.MeanSquaredError, "MSE"),
     ("MeanSquaredError", losses.MeanSquaredError, "mean_squared_error"),
     ("mae", losses.MeanAbsoluteError, "mae"),
     ("bce", losses.BinaryCrossentropy, "bce"),
     ("BCE", losses.BinaryCrossentropy, "BCE"),
     ("binary_crossentropy", losses.BinaryCrossentropy, "binary_crossentropy"),
     ("CategoricalCrossentropy", losses.CategoricalCrossentropy, "categorical_crossentropy"),
     ("sparse_categorical_crossentropy", losses.SparseCategoricalCrossentropy,
      "sparse_categorical_crossentropy")],
)  # fmt: skip
def test_string_identifiers(keras, identifier, cls, name):
    loss = losses.get(identifier, ("loss",))
    assert type(loss) is cls and loss.name == name
    assert _keras_loss(keras, identifier, np.zeros((2, 1)), np.zeros((2, 1))).name == name


@pytest.mark.parametrize(
    "identifier",
    ["cce", "scce", "CCE", "huber_loss", "logcosh", "kullback_leibler_divergence",
     "cosine_proximity", "Mse", "binary_cross_entropy", ""],
)  # fmt: skip
def test_strings_keras_rejects_are_rejected(keras, identifier):
    with pytest.raises(ValueError):
        keras.losses.get(identifier)
    with pytest.raises(ConfigError) as err:
        losses.get(identifier, ("compile", "loss"))
    assert err.value.loc == ("compile", "loss")


@pytest.mark.parametrize(
    ("y_shape", "p_shape", "cls"),
    [((N,), (N, 1), losses.BinaryCrossentropy),
     ((N, 1), (N, 3), losses.SparseCategoricalCrossentropy),
     ((N,), (N, 3), losses.SparseCategoricalCrossentropy),
     ((N, 3), (N, 3), losses.CategoricalCrossentropy)],
)  # fmt: skip
@pytest.mark.parametrize("identifier", ["crossentropy", "CE"])
def test_crossentropy_resolved_by_shape(keras, identifier, y_shape, p_shape, cls):
    loss = losses.get(identifier, ("loss",), y_true_shape=y_shape, y_pred_shape=p_shape)
    assert type(loss) is cls and loss.name == identifier
    theirs = _keras_loss(keras, identifier, np.zeros(y_shape), np.zeros(p_shape))
    assert theirs.fn.__name__ == loss.default_name
    with pytest.raises(ConfigError):
        losses.get(identifier, ("loss",))


@pytest.mark.parametrize("cls", losses.LOSSES.classes(), ids=lambda c: c.__name__)
def test_config_round_trip(keras, cls):
    default = cls.from_config({}, ("loss",))
    config = default.get_config()
    assert cls.from_config(config, ("loss",)).get_config() == config
    # Keras's own config for the class is accepted and comes back identical.
    keras_config = getattr(keras.losses, cls.__name__)().get_config()
    assert cls.from_config(keras_config, ("loss",)).get_config() == keras_config
    assert losses.get({"class_name": cls.__name__, "config": config}, ()).get_config() == config


def test_non_default_config_round_trip(keras):
    cfg = {"name": "x", "from_logits": True, "label_smoothing": 0.25, "axis": 1, "reduction": "sum"}
    ours = losses.get({"class_name": "CategoricalCrossentropy", "config": cfg}, ())
    assert ours.get_config() == keras.losses.CategoricalCrossentropy(**cfg).get_config()
    serialized = keras.saving.serialize_keras_object(
        keras.losses.BinaryCrossentropy(dtype="float32")
    )
    assert losses.get(serialized, ()).get_config() == serialized["config"]


@pytest.mark.parametrize(
    ("identifier", "loc"),
    [({"class_name": "BinaryCrossentropy", "config": {"lr": 1}}, ("l", "config", "lr")),
     ({"class_name": "BinaryCrossentropy", "config": {"label_smoothing": 1.5}},
      ("l", "config", "label_smoothing")),
     ({"class_name": "BinaryCrossentropy", "config": {"from_logits": "yes"}},
      ("l", "config", "from_logits")),
     ({"class_name": "MeanSquaredError", "config": {"reduction": "none"}},
      ("l", "config", "reduction")),
     ({"class_name": "MeanSquaredError", "config": {"reduction": "avg"}},
      ("l", "config", "reduction")),
     ({"class_name": "MeanSquaredError", "config": {"dtype": "float16"}}, ("l", "config", "dtype")),
     ({"class_name": "SparseCategoricalCrossentropy", "config": {"ignore_class": 0}},
      ("l", "config", "ignore_class")),
     ({"class_name": "SparseCategoricalCrossentropy", "config": {"axis": 1}},
      ("l", "config", "axis")),
     ({"class_name": "Circles"}, ("l", "class_name")),
     ({"config": {}}, ("l", "class_name")),
     ({"class_name": "MeanSquaredError", "module": "evil.module"}, ("l", "module")),
     (3, ("l",))],
)  # fmt: skip
def test_bad_configs_name_the_field(identifier, loc):
    assert_bad_config_names(identifier, loc)


# -- label checks --------------------------------------------------------------------------------

LABEL_CASES = [
    # (loss, y, output shape, error substring or None)
    ("binary_crossentropy", np.array([0, 1, 1]), (None, 1), None),
    ("binary_crossentropy", np.array([[0], [1.0]]), (2, 1), None),
    ("binary_crossentropy", np.array([0, 0.5, 1]), (3, 1), None),
    ("binary_crossentropy", np.array([0, 2, 1]), (3, 1), "in [0, 1]"),
    ("binary_crossentropy", np.array([-1, 0, 1]), (3, 1), "in [0, 1]"),
    ("binary_crossentropy", np.zeros((3, 2)), (3, 1), "expected labels of shape (3, 1)"),
    ("binary_crossentropy", np.zeros((3,)), (3, 2), "expected labels of shape (3, 2)"),
    ("binary_crossentropy", np.array([0.0, np.nan]), (2, 1), "finite"),
    ("binary_crossentropy", np.array(["a", "b"]), (2, 1), "numbers"),
    ("mse", np.zeros((3,)), (None, 1), None),
    ("mse", np.zeros((3, 1)), (3,), None),
    ("mse", np.zeros((3, 4)), (3, 4), None),
    ("mse", np.zeros((3, 4)), (3, 1), "expected labels of shape (3, 1)"),
    ("mae", np.zeros((3,)), (3, 4), "expected labels of shape (3, 4)"),
    ("categorical_crossentropy", np.eye(3)[[0, 2, 1, 1]], (None, 3), None),
    ("categorical_crossentropy", np.array([0, 2, 1]), (3, 3), "sparse_categorical_crossentropy"),
    ("categorical_crossentropy", np.zeros((3, 1)), (3, 3), "sparse_categorical_crossentropy"),
    ("categorical_crossentropy", np.zeros((3, 4)), (3, 3), "expected labels of shape (3, 3)"),
    ("sparse_categorical_crossentropy", np.array([0, 2, 1]), (None, 3), None),
    ("sparse_categorical_crossentropy", np.array([[0], [2], [1]]), (3, 3), None),
    ("sparse_categorical_crossentropy", np.array([0.0, 2.0, 1.0]), (3, 3), None),
    ("sparse_categorical_crossentropy", np.array([[0, 1], [2, 2]]), (2, 2, 3), None),
    ("sparse_categorical_crossentropy", np.array([0, 3, 1]), (3, 3), "[0, 3)"),
    ("sparse_categorical_crossentropy", np.array([0, -1, 1]), (3, 3), "[0, 3)"),
    ("sparse_categorical_crossentropy", np.array([0, 1.5, 1]), (3, 3), "integers"),
    ("sparse_categorical_crossentropy", np.eye(3), (3, 3), "(3,) or (3, 1)"),
    ("sparse_categorical_crossentropy", np.array([True, False]), (2, 2), None),
]


@pytest.mark.parametrize(("identifier", "y", "out_shape", "error"), LABEL_CASES)
def test_check_labels(identifier, y, out_shape, error):
    assert_check_labels(identifier, y, out_shape, error)


def test_check_labels_agrees_with_keras_on_what_runs(keras):
    # Shapes check_labels accepts must be computable by Keras (and by us) without error.
    for identifier, y, out_shape, error in LABEL_CASES:
        if error is not None or y.dtype.kind not in "biuf":
            continue
        shape = (y.shape[0], *out_shape[1:])
        p = np.full(shape, 0.5, dtype=np.float32)
        _compare(keras, identifier, y.astype(np.float32), p)


def test_bad_axis_is_a_data_error():
    loss = losses.get({"class_name": "CategoricalCrossentropy", "config": {"axis": 0}}, ())
    with pytest.raises(DataError, match="axis"):
        loss.check_labels(np.eye(3), (3, 3), ("y",))


def test_sample_weight_that_does_not_fit():
    loss = losses.get("mse", ("loss",))
    y, p = torch.zeros((4, 3, 2)), torch.ones((4, 3, 2))
    with pytest.raises(DataError) as err:
        loss(y, p, torch.ones(4))  # Keras raises too: per-timestep losses need (N, T) weights
    assert err.value.loc == ("sample_weight",)
