"""F-scores, the IoU family, the "X at Y" metrics, correlations and multi-threshold confusion
metrics against Keras 3 (torch backend): several updates with and without sample weights,
names, directions, configs, vector results, label checks and errors; and a walk of the whole
METRICS registry that finds a Keras-compared case for every metric."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from app.engine import metrics
from app.engine.config.errors import ConfigError, DataError
from app.engine.metrics import iou as metrics_iou
from app.engine.metrics.confusion import FalseNegatives, Precision, Recall, TruePositives
from app.engine.metrics.fscore import F1Score, FBetaScore
from app.engine.metrics.iou import OneHotMeanIoU
from tests.support.metric_checks import assert_runs_like_keras

RTOL, ATOL = 1e-6, 1e-7
RNG = np.random.default_rng(2024)
BATCHES = (5, 8, 3)
f32 = np.float32

pytestmark = pytest.mark.filterwarnings("ignore:You are passing weight as `float`")


def _softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis, keepdims=True))
    return (e / e.sum(axis, keepdims=True)).astype(f32)


def _data(kind: str, n: int, y_tail: tuple, p_tail: tuple) -> tuple[np.ndarray, np.ndarray]:
    if kind == "reg":
        y = RNG.normal(0, 2, (n, *y_tail)).astype(f32)
        return y, (0.5 * y + RNG.normal(0, 1, (n, *p_tail)).reshape(y.shape)).astype(f32)
    if kind == "onehot":  # one-hot labels, softmax scores
        y = np.eye(p_tail[-1], dtype=f32)[RNG.integers(0, p_tail[-1], (n, *p_tail[:-1]))]
        return y, _softmax(RNG.normal(0, 2, (n, *p_tail)))
    if kind == "multihot":
        return RNG.integers(0, 2, (n, *y_tail)).astype(f32), RNG.uniform(0, 1, (n, *p_tail))
    if kind == "ties":  # shared row maxima, all-zero rows, negative scores
        y = RNG.integers(0, 2, (n, *y_tail)).astype(f32)
        p = RNG.choice([0.0, 0.3, 0.7, -0.2, 1e-10], (n, *p_tail)).astype(f32)
        return y, p
    if kind == "scores":  # ties, bucket edges and the thresholds themselves
        y = RNG.integers(0, 2, (n, *y_tail)).astype(f32)
        p = RNG.uniform(0.01, 0.99, (n, *p_tail)).astype(f32)
        edges = np.array([0.0, 0.5, 1.0, 0.3, 1 / 199, 0.25, 0.75], dtype=f32)
        p = np.where(RNG.random(p.shape) < 0.4, RNG.choice(edges, p.shape), p).astype(f32)
        return y, p
    if kind == "ids":  # ids of 4 classes, some out of range, some fractional (truncated)
        y = RNG.choice([-1, 0, 1, 2, 3, 3, 2, 4], (n, *y_tail)).astype(f32)
        p = RNG.choice([0, 1, 2, 3, 2.7, -0.5, 4, 1.2], (n, *p_tail)).astype(f32)
        return y, p
    if kind == "sparse_scores":  # class ids against score vectors
        y = RNG.integers(0, p_tail[-1], (n, *y_tail)).astype(f32)
        return y, _softmax(RNG.normal(0, 2, (n, *p_tail)))
    if kind == "binary":
        y = RNG.integers(0, 2, (n, *y_tail)).astype(f32)
        p = RNG.choice([0.1, 0.5, 0.49, 0.9, 0.3, 0.7], (n, *p_tail)).astype(f32)  # 0.5: >=
        return y, p
    raise AssertionError(kind)


def _weights(n: int, tail: tuple) -> np.ndarray:
    # Up to 3, so that the IoU family's truncation to integers keeps 0, 1 and 2.
    w = RNG.uniform(0.0, 3.0, (n, *tail)).astype(f32)
    w.reshape(-1)[0] = 0.0
    return w


def _cfg(cls: str, **config: Any) -> dict[str, Any]:
    return {"class_name": cls, "config": config}


# fmt: off
CASES = [
    # identifier, data kind, label tail, output tail, weight tail
    (_cfg("F1Score", average="micro"), "onehot", (4,), (4,), ()),
    (_cfg("F1Score", average="macro"), "multihot", (3,), (3,), ()),
    (_cfg("F1Score", average="weighted", threshold=0.5), "multihot", (3,), (3,), ()),
    (_cfg("F1Score", average="macro", name="f1"), "ties", (4,), (4,), ()),
    (_cfg("FBetaScore", average="micro", beta=2.0), "multihot", (3,), (3,), ()),
    (_cfg("FBetaScore", average="macro", beta=0.5, threshold=0.3), "multihot", (3,), (3,), ()),
    (_cfg("FBetaScore", average="weighted", beta=1.5), "ties", (5,), (5,), ()),
    (_cfg("IoU", num_classes=4, target_class_ids=[0, 2]), "ids", (), (), ()),
    (_cfg("IoU", num_classes=4, target_class_ids=[3, 1, 1], ignore_class=2), "ids", 1, (), ()),
    (_cfg("IoU", num_classes=3, target_class_ids=[1], sparse_y_pred=False), "sparse_scores", (),
     (3,), ()),
    (_cfg("IoU", num_classes=3, target_class_ids=[0, 1], sparse_y_true=False, sparse_y_pred=False),
     "onehot", (3,), (3,), ()),
    (_cfg("IoU", num_classes=4, target_class_ids=[0, 1, 3], dtype="float32"), "ids", (), (), ()),
    (_cfg("MeanIoU", num_classes=4), "ids", (2, 3), (2, 3), (2, 3)),
    (_cfg("MeanIoU", num_classes=4, ignore_class=0), "ids", (1,), (1,), ()),
    (_cfg("MeanIoU", num_classes=3, sparse_y_pred=False), "sparse_scores", (4,), (4, 3), (4,)),
    (_cfg("MeanIoU", num_classes=4, dtype="float32", ignore_class=-1), "ids", (), (), ()),
    (_cfg("OneHotIoU", num_classes=3, target_class_ids=[0, 2]), "onehot", (3,), (3,), ()),
    (_cfg("OneHotIoU", num_classes=4, target_class_ids=[1], ignore_class=1), "onehot", 4, 4, ()),
    (_cfg("OneHotMeanIoU", num_classes=5), "onehot", (5,), (5,), ()),
    (_cfg("OneHotMeanIoU", num_classes=3, axis=-1), "onehot", (2, 3), (2, 3), (2,)),
    ("binary_io_u", "binary", (1,), (1,), ()),
    ("BinaryIoU", "binary", (3,), (3,), (3,)),
    (_cfg("BinaryIoU", target_class_ids=[1], threshold=0.3), "binary", (), (1,), ()),
    (_cfg("BinaryIoU", target_class_ids=[0], dtype="float32"), "binary", (2,), (2,), (2,)),
    (_cfg("PrecisionAtRecall", recall=0.5), "scores", (1,), (1,), ()),
    (_cfg("PrecisionAtRecall", recall=0.8, num_thresholds=20, class_id=1), "scores", 3, 3, ()),
    (_cfg("RecallAtPrecision", precision=0.6), "scores", (3,), (3,), ()),
    (_cfg("RecallAtPrecision", precision=0.4, num_thresholds=1), "scores", (), (1,), ()),
    (_cfg("SensitivityAtSpecificity", specificity=0.7), "scores", (2,), (2,), ()),
    (_cfg("SensitivityAtSpecificity", specificity=0.3, num_thresholds=2), "scores", 1, 1, ()),
    (_cfg("SpecificityAtSensitivity", sensitivity=0.9, class_id=0), "scores", (2,), (2,), ()),
    (_cfg("SpecificityAtSensitivity", sensitivity=0.5, num_thresholds=7), "scores", 1, 1, ()),
    ("pearson_correlation", "reg", (4,), (4,), ()),
    ("PearsonCorrelation", "reg", (3, 5), (3, 5), (3,)),
    (_cfg("PearsonCorrelation", axis=1), "reg", (6, 2), (6, 2), ()),
    ("concordance_correlation", "reg", (4,), (4,), ()),
    ("ConcordanceCorrelation", "reg", (2, 6), (2, 6), ()),
    (_cfg("ConcordanceCorrelation", axis=-2, name="ccc"), "reg", (5, 3), (5, 3), ()),
]
# fmt: on


def _tail(t: Any) -> tuple[int, ...]:
    return (t,) if isinstance(t, int) else tuple(t)


def _ids(case: Any) -> str:
    return case if isinstance(case, str) else f"{case['class_name']}{case['config']}"


def _keras_metric(keras: Any, identifier: Any, y_shape: tuple, p_shape: tuple) -> Any:
    from keras.src.trainers.compile_utils import get_metric

    # Unnamed Keras IoU, TruePositives, ... are numbered per process (free_memory=False: no
    # gc.collect(), which costs a good part of a second in a test process).
    keras.backend.clear_session(free_memory=False)
    return get_metric(identifier, keras.ops.zeros(y_shape), keras.ops.zeros(p_shape))


def _plain(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v.tolist() if hasattr(v, "tolist") else v for k, v in config.items()}


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize(("identifier", "kind", "y_tail", "p_tail", "w_tail"), CASES,
                         ids=[_ids(c[0]) for c in CASES])  # fmt: skip
def test_running_values_match_keras(keras, identifier, kind, y_tail, p_tail, w_tail, weighted):
    y_tail, p_tail, w_tail = _tail(y_tail), _tail(p_tail), _tail(w_tail)
    y_shape, p_shape = (BATCHES[0], *y_tail), (BATCHES[0], *p_tail)
    ours = metrics.get(identifier, ("metrics", 0), y_true_shape=y_shape, y_pred_shape=p_shape)
    theirs = _keras_metric(keras, identifier, y_shape, p_shape)
    assert type(ours).__name__ == type(theirs).__name__
    assert ours.name == theirs.name
    assert ours.direction == getattr(theirs, "_direction", None)
    assert ours.get_config() == _plain(theirs.get_config())
    np.testing.assert_array_equal(ours.result().numpy(), 0.0)

    def batch(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        y, p = _data(kind, n, y_tail, p_tail)
        return y, p, _weights(n, w_tail) if weighted else None

    assert_runs_like_keras(ours, theirs, batch, BATCHES, rtol=RTOL, atol=ATOL)


VECTOR_CASES = [
    # our class and Keras's name, constructor arguments, data kind, tails
    (F1Score, {"average": None}, "multihot", (4,), (4,)),
    (F1Score, {"average": None, "threshold": 0.4}, "ties", (3,), (3,)),
    (FBetaScore, {"average": None, "beta": 2.0}, "onehot", (5,), (5,)),
    (TruePositives, {"thresholds": [0.2, 0.5, 0.8]}, "scores", (3,), (3,)),
    (FalseNegatives, {"thresholds": [0.0, 0.25, 0.5, 0.75, 1.0]}, "scores", (2,), (2,)),
    (Precision, {"thresholds": [0.3, 0.6]}, "scores", (1,), (1,)),
    (Precision, {"thresholds": [0.0, 0.5, 1.0], "class_id": 1}, "scores", (3,), (3,)),
    (Recall, {"thresholds": [0.1, 0.9], "top_k": 2}, "scores", (4,), (4,)),
    (Recall, {"thresholds": [0.5]}, "scores", (2,), (2,)),
]


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize(("cls", "kwargs", "kind", "y_tail", "p_tail"), VECTOR_CASES,
                         ids=[f"{c[0].__name__}{c[1]}" for c in VECTOR_CASES])  # fmt: skip
def test_vector_results_match_keras(keras, cls, kwargs, kind, y_tail, p_tail, weighted):
    """The classes compute Keras's vector results (requests are refused, see below)."""
    keras.backend.clear_session(free_memory=False)
    ours, theirs = cls(**kwargs), getattr(keras.metrics, cls.__name__)(**kwargs)
    assert ours.get_config() == theirs.get_config()
    for n in BATCHES:
        y, p = _data(kind, n, y_tail, p_tail)
        w = _weights(n, ()) if weighted else None
        ours.update_state(torch.tensor(y), torch.tensor(p), None if w is None else torch.tensor(w))
        theirs.update_state(y, p, sample_weight=w)
        got, want = ours.result(), np.asarray(theirs.result())
        assert got.shape == want.shape
        np.testing.assert_allclose(got.numpy(), want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(
    "identifier",
    ["f1_score", "F1Score", "f_beta_score", "FBetaScore", _cfg("F1Score", threshold=0.5),
     _cfg("TruePositives", thresholds=[0.2, 0.5]), _cfg("Recall", thresholds=[0.1, 0.9])],
    ids=_ids,
)  # fmt: skip
def test_vector_results_are_refused_with_a_reason(keras, identifier):
    keras_metric = _keras_metric(keras, identifier, (4, 3), (4, 3))
    keras_metric.update_state(np.eye(3, dtype=f32)[[0, 1, 2, 0]], RNG.uniform(size=(4, 3)))
    assert np.asarray(keras_metric.result()).shape != ()  # Keras logs an array
    with pytest.raises(ConfigError, match=r"one number per metric|log cannot hold") as err:
        metrics.get(identifier, ("m",), y_true_shape=(4, 3), y_pred_shape=(4, 3))
    assert err.value.loc[-1] in ("average", "thresholds")


@pytest.mark.parametrize(
    "identifier",
    ["io_u", "IoU", "mean_io_u", "one_hot_io_u", "one_hot_mean_io_u", "OneHotMeanIoU",
     "precision_at_recall", "recall_at_precision", "sensitivity_at_specificity",
     "specificity_at_sensitivity", "SpecificityAtSensitivity"],
)  # fmt: skip
def test_strings_of_metrics_with_required_arguments(keras, identifier):
    """Keras cannot build these from a string either (missing constructor arguments)."""
    with pytest.raises(TypeError):
        _keras_metric(keras, identifier, (4, 3), (4, 3))
    with pytest.raises(ConfigError, match="is required") as err:
        metrics.get(identifier, ("m",), y_true_shape=(4, 3), y_pred_shape=(4, 3))
    assert err.value.loc[-1] in ("num_classes", "recall", "precision", "specificity",
                                 "sensitivity")  # fmt: skip


def test_per_sample_weights_spread_over_each_samples_entries(keras):
    """Keras cannot broadcast (samples,) weights over (samples, h, w) labels; here each
    sample's weight counts for its entries, equal to Keras given the spread-out weights."""
    ours = metrics.get(_cfg("MeanIoU", num_classes=4), (), y_true_shape=(3, 2, 2),
                       y_pred_shape=(3, 2, 2))  # fmt: skip
    theirs = keras.metrics.MeanIoU(num_classes=4)
    for _ in range(3):
        y, p = _data("ids", 3, (2, 2), (2, 2))
        w = np.array([0.0, 1.0, 2.0], dtype=f32)
        ours.update_state(torch.tensor(y), torch.tensor(p), torch.tensor(w))
        theirs.update_state(y, p, sample_weight=np.broadcast_to(w[:, None, None], y.shape))
    np.testing.assert_allclose(ours.result().numpy(), np.asarray(theirs.result()), rtol=RTOL)


def test_one_hot_axis_other_than_last(keras):
    """Keras's result() fails for axis 1 (it sums a vector along axis 1); here it is the mean
    IoU, equal to Keras's with the classes moved last."""
    ours = OneHotMeanIoU(num_classes=3, axis=1)
    theirs = keras.metrics.OneHotMeanIoU(num_classes=3)
    for n in BATCHES:
        y, p = _data("onehot", n, (), (4, 3))
        y, p = np.moveaxis(y, -1, 1), np.moveaxis(p, -1, 1)
        ours.update_state(torch.tensor(y), torch.tensor(p))
        theirs.update_state(np.moveaxis(y, 1, -1), np.moveaxis(p, 1, -1))
    np.testing.assert_allclose(ours.result().numpy(), np.asarray(theirs.result()), rtol=RTOL)
    with pytest.raises(IndexError):
        broken = keras.metrics.OneHotMeanIoU(num_classes=3, axis=1)
        broken.update_state(y, p)
        broken.result()


@pytest.mark.parametrize(
    ("identifier", "loc"),
    [(_cfg("F1Score", average="samples"), ("m", "config", "average")),
     (_cfg("FBetaScore", average="macro", beta=0), ("m", "config", "beta")),
     (_cfg("FBetaScore", average="macro", beta="2"), ("m", "config", "beta")),
     (_cfg("F1Score", average="micro", threshold=0.0), ("m", "config", "threshold")),
     (_cfg("F1Score", average="micro", threshold=1.5), ("m", "config", "threshold")),
     (_cfg("F1Score", average="micro", beta=2.0), ("m", "config", "beta")),
     (_cfg("IoU", num_classes=3, target_class_ids=[0, 3]), ("m", "config", "target_class_ids")),
     (_cfg("IoU", num_classes=3, target_class_ids=[]), ("m", "config", "target_class_ids")),
     (_cfg("IoU", num_classes=3, target_class_ids=[-1]), ("m", "config", "target_class_ids")),
     (_cfg("IoU", num_classes=3), ("m", "config", "target_class_ids")),
     (_cfg("MeanIoU", num_classes=0), ("m", "config", "num_classes")),
     (_cfg("MeanIoU", num_classes=100_000), ("m", "config", "num_classes")),
     (_cfg("MeanIoU", num_classes=3, dtype="float16"), ("m", "config", "dtype")),
     (_cfg("MeanIoU", num_classes=3, target_class_ids=[0]), ("m", "config", "target_class_ids")),
     (_cfg("OneHotIoU", num_classes=3, target_class_ids=[0], sparse_y_true=True),
      ("m", "config", "sparse_y_true")),
     (_cfg("MeanIoU", num_classes=3, sparse_y_pred="no"), ("m", "config", "sparse_y_pred")),
     (_cfg("BinaryIoU", target_class_ids=[2]), ("m", "config", "target_class_ids")),
     (_cfg("BinaryIoU", num_classes=3), ("m", "config", "num_classes")),
     (_cfg("PrecisionAtRecall", recall=1.5), ("m", "config", "recall")),
     (_cfg("RecallAtPrecision", precision=0.5, num_thresholds=0),
      ("m", "config", "num_thresholds")),
     (_cfg("SensitivityAtSpecificity", specificity=0.5, class_id="a"), ("m", "config", "class_id")),
     (_cfg("SpecificityAtSensitivity", specificity=0.5), ("m", "config", "specificity")),
     (_cfg("PearsonCorrelation", axis="last"), ("m", "config", "axis")),
     (_cfg("ConcordanceCorrelation", dtype="float64"), ("m", "config", "dtype"))],
)  # fmt: skip
def test_bad_configs_name_the_field(identifier, loc):
    with pytest.raises(ConfigError) as err:
        metrics.get(identifier, ("m",), y_true_shape=(2, 3), y_pred_shape=(2, 3))
    assert err.value.loc == loc


def _get(identifier: Any, y_shape: tuple, p_shape: tuple) -> Any:
    return metrics.get(identifier, (), y_true_shape=y_shape, y_pred_shape=p_shape)


def test_bad_inputs_are_data_errors():
    f1 = _get(_cfg("F1Score", average="macro"), (4, 3), (4, 3))
    with pytest.raises(DataError, match="samples, classes"):
        f1.update_state(torch.zeros(4), torch.zeros(4))
    f1.update_state(torch.zeros(4, 3), torch.zeros(4, 3))
    with pytest.raises(DataError):  # built for 3 classes
        f1.update_state(torch.zeros(4, 2), torch.zeros(4, 2))
    with pytest.raises(DataError) as err:
        f1.update_state(torch.zeros(4, 3), torch.zeros(4, 3), torch.ones(4, 3))
    assert err.value.loc == ("sample_weight",)
    iou = _get(_cfg("MeanIoU", num_classes=3), (4,), (4, 3))
    with pytest.raises(DataError, match="sparse_y_pred to false"):
        iou.update_state(torch.zeros(4), torch.zeros(4, 3))
    with pytest.raises(DataError) as err:
        iou.update_state(torch.zeros(4, 2), torch.zeros(4, 2), torch.ones(3))
    assert err.value.loc == ("sample_weight",)
    onehot = _get(_cfg("OneHotMeanIoU", num_classes=3, axis=2), (4, 3), (4, 3))
    with pytest.raises(DataError, match="axis 2"):
        onehot.update_state(torch.zeros(4, 3), torch.zeros(4, 3))
    pearson = _get("pearson_correlation", (4, 3), (4, 3))
    with pytest.raises(DataError):
        pearson.update_state(torch.zeros(4, 3), torch.zeros(4, 2))


@pytest.mark.parametrize(
    ("identifier", "y", "p_shape", "match"),
    [(_cfg("MeanIoU", num_classes=3), [0, 1, 3], (3,), r"in \[0, 3\), got 3"),
     (_cfg("MeanIoU", num_classes=3), [0, -1, 2], (3, 1), "ignore_class"),
     (_cfg("MeanIoU", num_classes=3), [0, 1.5, 2], (3,), "whole class ids"),
     (_cfg("IoU", num_classes=3, target_class_ids=[0]), [0, 1, 2], (3, 3), "sparse_y_pred"),
     (_cfg("OneHotIoU", num_classes=2, target_class_ids=[0]), np.eye(3), (3, 3), "one-hot"),
     (_cfg("OneHotMeanIoU", num_classes=3), np.eye(3), (3, 2, 3), "one predicted class"),
     ("binary_io_u", [0, 2, 1], (3, 1), r"in \[0, 2\)"),
     (_cfg("F1Score", average="macro"), [0, 1, 2], (3, 3), "samples, classes"),
     (_cfg("FBetaScore", average="macro"), np.eye(3), (3, 4), "samples, classes")],
)  # fmt: skip
def test_label_checks_at_request_time(identifier, y, p_shape, match):
    """Labels Keras would score silently wrong (or fail on mid-fit) are refused up front."""
    y = np.asarray(y, dtype=f32)
    m = _get(identifier, y.shape, p_shape)
    with pytest.raises(DataError, match=match) as err:
        m.check_labels(y, (None, *p_shape[1:]), ("data", "y"))
    assert err.value.loc == ("data", "y")


@pytest.mark.parametrize(
    ("identifier", "y", "p_shape"),
    [(_cfg("MeanIoU", num_classes=3), [[0], [1], [2]], (3, 1)),
     (_cfg("MeanIoU", num_classes=3, ignore_class=255), [0, 255, 2], (3,)),
     (_cfg("MeanIoU", num_classes=3, sparse_y_pred=False), [[0, 2], [1, 1]], (2, 2, 3)),
     (_cfg("OneHotMeanIoU", num_classes=3), np.eye(3), (3, 3)),
     ("binary_io_u", [0, 1, 1], (3, 1)),
     (_cfg("F1Score", average="macro"), np.eye(3), (3, 3))],
)  # fmt: skip
def test_good_labels_pass_the_check(identifier, y, p_shape):
    y = np.asarray(y, dtype=f32)
    _get(identifier, y.shape, p_shape).check_labels(y, (None, *p_shape[1:]), ("y",))


def test_iou_counts_stay_exact_past_float32_precision():
    """Integer counts: 2**24 + 1 pixels still add up (float32 state would lose the 1)."""
    m = _get(_cfg("MeanIoU", num_classes=2), (1,), (1,))
    ones = torch.ones(2**24, dtype=torch.float32)
    m.update_state(ones, ones)
    m.update_state(torch.zeros(1), torch.ones(1))
    assert m._cm is not None and m._cm[1, 1].item() == 2**24 and m._cm[0, 1].item() == 1


def _registry_classes_with_cases() -> set[str]:
    from tests.engine import test_metrics, test_metrics_more

    found = {c[4] for c in test_metrics.CASES}  # "accuracy" is resolved by shapes there
    for case in (*test_metrics_more.CASES, *CASES):
        cls, _, _ = metrics.METRICS.parse(case[0], ())
        found.add(cls.__name__)
    return found


def test_every_registered_metric_is_compared_with_keras():
    missing = {c.__name__ for c in metrics.METRICS.classes()} - _registry_classes_with_cases()
    assert not missing, f"no Keras comparison case for {sorted(missing)}"


def test_keras_metrics_left_out_are_only_the_reduction_bases(keras):
    """Every class keras.metrics exports is registered here, but Keras's bases and the
    value-reducing Mean and Sum, which take values rather than labels and outputs."""
    import inspect

    exported = {n for n in dir(keras.metrics) if inspect.isclass(getattr(keras.metrics, n))}
    registered = {c.__name__ for c in metrics.METRICS.classes()}
    assert exported - registered == {"Metric", "MeanMetricWrapper", "Mean", "Sum"}


_GPU_SPECS = [
    _cfg("F1Score", average="macro"), _cfg("FBetaScore", average="micro", beta=2.0),
    _cfg("F1Score", average="weighted", threshold=0.5), _cfg("MeanIoU", num_classes=3),
    _cfg("IoU", num_classes=3, target_class_ids=[1, 2], dtype="float32"),
    _cfg("MeanIoU", num_classes=3, sparse_y_pred=False, ignore_class=0),
    _cfg("OneHotMeanIoU", num_classes=3), "binary_io_u", _cfg("PrecisionAtRecall", recall=0.5),
    _cfg("SpecificityAtSensitivity", sensitivity=0.5, num_thresholds=1),
    _cfg("RecallAtPrecision", precision=0.7, class_id=2), "pearson_correlation",
    "concordance_correlation",
]  # fmt: skip


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_updates_never_synchronise_on_cuda_and_match_the_cpu():
    def build() -> list[Any]:
        built = [_get(s, (8, 3), (8, 3)) for s in _GPU_SPECS]
        return [*built, TruePositives(thresholds=[0.0, 0.5, 1.0]), Precision(thresholds=[0.2, 0.7])]

    def inputs(m: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        sparse = getattr(m, "sparse_y_true", False) and not isinstance(m, metrics_iou.BinaryIoU)
        if sparse:
            return batch["ids"], batch["ids"] if m.sparse_y_pred else batch["p"]
        return batch["y"], batch["p"]

    cuda = torch.device("cuda")
    batches = []
    for _ in range(3):
        y = torch.eye(3)[torch.randint(0, 3, (8,))]
        batches.append({"y": y, "p": torch.rand(8, 3), "w": torch.rand(8) * 3,
                        "ids": torch.randint(-1, 4, (8,)).float()})  # fmt: skip
    on_cpu, on_gpu = build(), build()
    gpu_batches = [{k: v.to(cuda) for k, v in b.items()} for b in batches]
    for m in on_gpu:  # the first update builds state and cached constants
        m.update_state(*inputs(m, gpu_batches[0]), gpu_batches[0]["w"])
        m.result()
        m.reset_state()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for batch in gpu_batches:
            for m in on_gpu:
                m.update_state(*inputs(m, batch), batch["w"])
                m.update_state(*inputs(m, batch))
        results = [m.result() for m in on_gpu]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    for batch in batches:
        for m in on_cpu:
            m.update_state(*inputs(m, batch), batch["w"])
            m.update_state(*inputs(m, batch))
    for m, got in zip(on_cpu, results, strict=True):
        assert got.device.type == "cuda"
        np.testing.assert_allclose(got.cpu().numpy(), m.result().numpy(), rtol=RTOL, atol=ATOL)
