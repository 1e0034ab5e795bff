"""Metrics against Keras 3 (torch backend): running weighted means over several updates,
compile's "accuracy" resolution, names, directions, configs and errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from app.engine import metrics
from app.engine.config.errors import ConfigError, DataError
from tests.support.metric_checks import assert_runs_like_keras

RTOL, ATOL = 1e-6, 1e-7
RNG = np.random.default_rng(99)
BATCHES = (5, 8, 3)  # uneven, as with a partial last batch


def _keras_metric(keras: Any, identifier: Any, y_shape: tuple, p_shape: tuple) -> Any:
    from keras.src.trainers.compile_utils import get_metric

    return get_metric(identifier, keras.ops.zeros(y_shape), keras.ops.zeros(p_shape))


def _data(kind: str, n: int, y_tail: tuple, p_tail: tuple) -> tuple[np.ndarray, np.ndarray]:
    if kind == "binary":
        y = RNG.integers(0, 2, (n, *y_tail)).astype(np.float32)
        p = RNG.choice([0.1, 0.5, 0.7, 0.2, 0.9], (n, *p_tail)).astype(np.float32)  # 0.5: strict >
    elif kind == "sparse":
        y = RNG.integers(0, p_tail[-1], (n, *y_tail)).astype(np.float32)
        p = RNG.integers(0, 3, (n, *p_tail)).astype(np.float32)  # ties: the first index wins
    elif kind == "categorical":
        y = np.eye(p_tail[-1], dtype=np.float32)[RNG.integers(0, p_tail[-1], n)]
        p = RNG.integers(0, 3, (n, *p_tail)).astype(np.float32)
    elif kind == "exact":
        y = RNG.integers(0, 3, (n, *y_tail)).astype(np.float32)
        p = RNG.integers(0, 3, (n, *p_tail)).astype(np.float32)
    else:
        y = RNG.normal(0, 2, (n, *y_tail)).astype(np.float32)
        p = RNG.normal(0, 2, (n, *p_tail)).astype(np.float32)
    return y, p


def _weights(n: int, tail: tuple) -> np.ndarray:
    w = RNG.uniform(0.0, 2.0, (n, *tail)).astype(np.float32)
    w.reshape(-1)[0] = 0.0
    return w


CASES = [
    # identifier, kind, y tail, output tail, expected class
    ("accuracy", "binary", (), (1,), "BinaryAccuracy"),
    ("acc", "binary", (1,), (1,), "BinaryAccuracy"),
    ("ACCURACY", "sparse", (), (4,), "SparseCategoricalAccuracy"),
    ("Acc", "sparse", (1,), (4,), "SparseCategoricalAccuracy"),
    ("accuracy", "categorical", (4,), (4,), "CategoricalAccuracy"),
    ("binary_accuracy", "binary", (3,), (3,), "BinaryAccuracy"),
    (
        {"class_name": "BinaryAccuracy", "config": {"threshold": 0.3, "name": "ba"}},
        "binary",
        (),
        (1,),
        "BinaryAccuracy",
    ),
    ("sparse_categorical_accuracy", "sparse", (2,), (2, 3), "SparseCategoricalAccuracy"),
    ("CategoricalAccuracy", "categorical", (3,), (3,), "CategoricalAccuracy"),
    ({"class_name": "Accuracy"}, "exact", (), (1,), "Accuracy"),
    ({"class_name": "Accuracy"}, "exact", (2,), (2,), "Accuracy"),
    ("mse", "regression", (), (1,), "MeanSquaredError"),
    ("MSE", "regression", (2,), (2,), "MeanSquaredError"),
    ("mean_squared_error", "regression", (3, 2), (3, 2), "MeanSquaredError"),
    ("mae", "regression", (1,), (1,), "MeanAbsoluteError"),
    ("MeanAbsoluteError", "regression", (3, 2), (3, 2), "MeanAbsoluteError"),
]


@pytest.mark.parametrize("weight_tail", [None, ()])
@pytest.mark.parametrize(("identifier", "kind", "y_tail", "p_tail", "cls"), CASES)
def test_running_values_match_keras(keras, identifier, kind, y_tail, p_tail, cls, weight_tail):
    y_shape, p_shape = (BATCHES[0], *y_tail), (BATCHES[0], *p_tail)
    ours = metrics.get(identifier, ("metrics", 0), y_true_shape=y_shape, y_pred_shape=p_shape)
    theirs = _keras_metric(keras, identifier, y_shape, p_shape)
    assert type(ours).__name__ == type(theirs).__name__ == cls
    assert ours.name == theirs.name
    assert ours.direction == getattr(theirs, "_direction", None)
    np.testing.assert_array_equal(ours.result().numpy(), 0.0)

    def batch(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        y, p = _data(kind, n, y_tail, p_tail)
        return y, p, None if weight_tail is None else _weights(n, weight_tail)

    assert_runs_like_keras(
        ours, theirs, batch, BATCHES, rtol=RTOL, atol=ATOL, zero_after_reset=True
    )


@pytest.mark.parametrize("w_shape", [(6,), (6, 1), (6, 3)])
def test_per_timestep_values_with_weights(keras, w_shape):
    ours = metrics.get("mse", (), y_true_shape=(6, 3, 2), y_pred_shape=(6, 3, 2))
    theirs = _keras_metric(keras, "mse", (6, 3, 2), (6, 3, 2))
    for _ in range(3):
        y, p = _data("regression", 6, (3, 2), (3, 2))
        w = RNG.uniform(0, 2, w_shape).astype(np.float32)
        ours.update_state(torch.tensor(y), torch.tensor(p), torch.tensor(w))
        theirs.update_state(y, p, sample_weight=w)
    np.testing.assert_allclose(ours.result().numpy(), np.asarray(theirs.result()), rtol=RTOL)


def test_mean_as_loss_tracker(keras):
    ours, theirs = metrics.Mean(name="loss"), keras.metrics.Mean(name="loss")
    for value, size in [(0.75, 32), (0.5, 32), (1.25, 7)]:
        ours.update_state(torch.tensor(value), sample_weight=size)
        theirs.update_state(value, sample_weight=size)
    np.testing.assert_allclose(ours.result().numpy(), np.asarray(theirs.result()), rtol=RTOL)
    assert ours.result().item() == pytest.approx((0.75 * 32 + 0.5 * 32 + 1.25 * 7) / 71)


@pytest.mark.parametrize(
    ("values_shape", "weight_shape"),
    [((5,), None), ((5,), (5,)), ((5,), ()), ((5, 3), None), ((5, 3), (5,)), ((), None), ((), ())],
)
def test_mean_with_values_and_weights(keras, values_shape, weight_shape):
    ours, theirs = metrics.Mean(), keras.metrics.Mean()
    for _ in range(3):
        v = RNG.normal(size=values_shape).astype(np.float32)
        w = None if weight_shape is None else RNG.uniform(0, 2, weight_shape).astype(np.float32)
        ours.update_state(torch.tensor(v), None if w is None else torch.tensor(w))
        theirs.update_state(v, sample_weight=w)
    np.testing.assert_allclose(ours.result().numpy(), np.asarray(theirs.result()), rtol=RTOL)
    assert ours.direction is None and ours.get_config() == theirs.get_config()


def test_mismatched_weights_are_a_data_error():
    m = metrics.get("mse", (), y_true_shape=(4, 1), y_pred_shape=(4, 1))
    with pytest.raises(DataError) as err:
        m.update_state(torch.zeros(4, 1), torch.zeros(4, 1), torch.ones(3))
    assert err.value.loc == ("sample_weight",)


def test_updates_do_not_track_gradients():
    m = metrics.get("mae", (), y_true_shape=(3, 1), y_pred_shape=(3, 1))
    p = torch.ones((3, 1), requires_grad=True)
    m.update_state(torch.zeros((3, 1)), p * 2)
    assert not m.result().requires_grad


def test_state_follows_the_device():
    m = metrics.Mean().to("cpu")
    assert m.result().device.type == "cpu"
    m.update_state(torch.tensor([1.0, 3.0]))
    assert m.result().item() == 2.0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_updates_never_synchronise_on_cuda():
    cuda = torch.device("cuda")
    ms = [metrics.get(i, (), y_true_shape=(8,), y_pred_shape=(8, 3)) for i in ("acc", "mse")]
    ms.append(metrics.get("accuracy", (), y_true_shape=(8, 1), y_pred_shape=(8, 1)))
    mean = metrics.Mean()
    y, p = torch.randint(0, 3, (8,), device=cuda).float(), torch.rand(8, 3, device=cuda)
    y1, p1 = torch.randint(0, 2, (8, 1), device=cuda).float(), torch.rand(8, 1, device=cuda)
    w = torch.rand(8, device=cuda)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(2):
            ms[0].update_state(y, p, w)
            ms[1].update_state(y.unsqueeze(1), p[:, :1])
            ms[2].update_state(y1, p1, w)
            mean.update_state(p.sum(), sample_weight=8)
            results = [m.result() for m in [*ms, mean]]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(r.device.type == "cuda" for r in results)


# -- identifiers, configs ------------------------------------------------------------------------


# Arguments a metric cannot do without (Keras's constructors require them too), or, for the
# F-scores, a scalar average in place of Keras's per-class default (refused here).
_REQUIRED: dict[str, dict[str, Any]] = {
    "IoU": {"num_classes": 3, "target_class_ids": [0, 2]},
    "MeanIoU": {"num_classes": 3},
    "OneHotIoU": {"num_classes": 3, "target_class_ids": [1]},
    "OneHotMeanIoU": {"num_classes": 3},
    "F1Score": {"average": "macro"},
    "FBetaScore": {"average": "weighted"},
    "PrecisionAtRecall": {"recall": 0.5},
    "RecallAtPrecision": {"precision": 0.5},
    "SensitivityAtSpecificity": {"specificity": 0.5},
    "SpecificityAtSensitivity": {"sensitivity": 0.5},
}


@pytest.mark.parametrize("cls", metrics.METRICS.classes(), ids=lambda c: c.__name__)
def test_config_round_trip(keras, cls):
    # Unnamed AUC, Precision, ... are numbered per process (free_memory=False: no gc.collect()).
    keras.backend.clear_session(free_memory=False)
    required = _REQUIRED.get(cls.__name__, {})
    config = cls.from_config(required, ()).get_config()
    assert cls.from_config(config, ()).get_config() == config
    keras_metric = getattr(keras.metrics, cls.__name__)(**required)
    keras_config = keras_metric.get_config()
    assert config == keras_config
    assert cls.from_config(keras_config, ()).get_config() == keras_config
    got = metrics.get({"class_name": cls.__name__, "config": config}, (), y_true_shape=(2, 1),
                      y_pred_shape=(2, 1))  # fmt: skip
    assert got.get_config() == config
    assert cls.direction == getattr(keras_metric, "_direction", None)


def test_non_default_config(keras):
    cfg = {"name": "hits", "threshold": 0.25, "dtype": "float32"}
    ours = metrics.get({"class_name": "BinaryAccuracy", "config": cfg}, (), y_true_shape=(2,),
                       y_pred_shape=(2, 1))  # fmt: skip
    assert (
        ours.name == "hits"
        and ours.get_config() == keras.metrics.BinaryAccuracy(**cfg).get_config()
    )


@pytest.mark.parametrize(
    "identifier",
    ["rmse", "kld", "logcosh", "crossentropy", "cosine_proximity", "huber", "Mse"],
)
def test_unknown_strings(keras, identifier):
    with pytest.raises(ValueError):
        _keras_metric(keras, identifier, (2, 1), (2, 1))
    with pytest.raises(ConfigError) as err:
        metrics.get(identifier, ("compile", "metrics", 1), y_true_shape=(2, 1), y_pred_shape=(2, 1))
    assert err.value.loc == ("compile", "metrics", 1)


def test_mean_is_not_a_compile_metric():
    # Keras would feed (y_true, y_pred) to Mean as (values, weights): refused here.
    with pytest.raises(ConfigError, match="averages values"):
        metrics.get("mean", ("m",), y_true_shape=(2, 1), y_pred_shape=(2, 1))


@pytest.mark.parametrize(
    ("identifier", "loc"),
    [({"class_name": "BinaryAccuracy", "config": {"threshold": "high"}},
      ("m", "config", "threshold")),
     ({"class_name": "BinaryAccuracy", "config": {"k": 5}}, ("m", "config", "k")),
     ({"class_name": "MeanSquaredError", "config": {"dtype": "float64"}}, ("m", "config", "dtype")),
     ({"class_name": "MeanSquaredError", "config": {"name": 3}}, ("m", "config", "name")),
     ({"class_name": "Sum"}, ("m", "class_name")),
     ({"class_name": "MeanIoU"}, ("m", "config", "num_classes")),
     ({"class_name": "mse", "module": "my.metrics"}, ("m", "module")),
     (None, ("m",))],
)  # fmt: skip
def test_bad_configs_name_the_field(identifier, loc):
    with pytest.raises(ConfigError) as err:
        metrics.get(identifier, ("m",), y_true_shape=(2, 1), y_pred_shape=(2, 1))
    assert err.value.loc == loc
