"""The rest of Keras's metrics against Keras 3 (torch backend): top-k, regression, probabilistic,
hinge and confusion-matrix metrics over several updates, with and without sample weights."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from app.engine import metrics
from app.engine.config.errors import ConfigError, DataError
from tests.support.metric_checks import assert_runs_like_keras

RTOL, ATOL = 1e-6, 1e-7
RNG = np.random.default_rng(7)
BATCHES = (5, 8, 3)


@pytest.fixture(autouse=True)
def _fresh_keras_names(keras):
    """Unnamed Keras AUC, Precision, ... are numbered per process: leave the counters clear."""
    yield
    keras.backend.clear_session(free_memory=False)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return (e / e.sum(-1, keepdims=True)).astype(np.float32)


def _data(kind: str, n: int, y_tail: tuple, p_tail: tuple) -> tuple[np.ndarray, np.ndarray]:
    f32 = np.float32
    normal = RNG.normal(0, 2, (n, *p_tail)).astype(f32)
    if kind == "reg":
        return RNG.normal(0, 2, (n, *y_tail)).astype(f32), normal
    if kind == "pos":
        y = RNG.uniform(0, 3, (n, *y_tail)).astype(f32)
        return y, RNG.uniform(0.1, 3, (n, *p_tail)).astype(f32)
    if kind in ("prob", "logits", "scores"):
        y = RNG.integers(0, 2, (n, *y_tail)).astype(f32)
        if kind == "logits":
            return y, normal
        p = RNG.uniform(0.01, 0.99, (n, *p_tail)).astype(f32)
        if kind == "scores":  # ties, bucket edges and the thresholds themselves
            edges = np.array([0.0, 0.5, 1.0, 0.3, 1 / 199, 0.7], dtype=f32)
            p = np.where(RNG.random(p.shape) < 0.4, RNG.choice(edges, p.shape), p).astype(f32)
        return y, p
    if kind == "pm1":
        return RNG.choice([-1.0, 1.0], (n, *y_tail)).astype(f32), normal
    if kind in ("onehot", "onehot_logits"):
        y = np.eye(p_tail[-1], dtype=f32)[RNG.integers(0, p_tail[-1], (n, *p_tail[:-1]))]
        return y, normal if kind == "onehot_logits" else _softmax(normal)
    if kind in ("sparse", "sparse_logits"):
        y = RNG.integers(0, p_tail[-1], (n, *y_tail)).astype(f32)
        return y, normal if kind == "sparse_logits" else _softmax(normal)
    if kind == "sorted_ids":
        y = RNG.integers(0, 6, (n, *y_tail)).astype(f32)
        return y, np.argsort(-RNG.normal(size=(n, 6)), axis=-1).astype(f32)
    if kind == "dist":
        return _softmax(RNG.normal(size=(n, *y_tail))), _softmax(normal)
    raise AssertionError(kind)


def _cfg(cls: str, **config: Any) -> dict[str, Any]:
    return {"class_name": cls, "config": config}


CASES = [
    # identifier, kind, y tail, output tail
    ("root_mean_squared_error", "reg", (), (1,)),
    ("RootMeanSquaredError", "reg", (3,), (3,)),
    ("mape", "reg", (2,), (2,)),
    ("MAPE", "reg", (1,), (1,)),
    ("msle", "pos", (3,), (3,)),
    ("MeanSquaredLogarithmicError", "reg", (3,), (3,)),
    ("cosine_similarity", "reg", (4,), (4,)),
    (_cfg("CosineSimilarity", axis=1), "reg", (3, 2), (3, 2)),
    ("log_cosh_error", "reg", (3,), (3,)),
    ("r2_score", "reg", (3,), (3,)),
    ("R2Score", "reg", (), (1,)),
    (_cfg("R2Score", class_aggregation="variance_weighted_average"), "reg", (2,), (2,)),
    (_cfg("R2Score", num_regressors=2), "reg", (2,), (2,)),
    ("bce", "prob", (1,), (1,)),
    ("binary_crossentropy", "prob", (3,), (3,)),
    (_cfg("BinaryCrossentropy", from_logits=True, label_smoothing=0.1), "logits", (2,), (2,)),
    ("categorical_crossentropy", "onehot", (4,), (4,)),
    (_cfg("CategoricalCrossentropy", from_logits=True, label_smoothing=0.2), "onehot_logits", 4, 4),
    ("sparse_categorical_crossentropy", "sparse", (), (4,)),
    (_cfg("SparseCategoricalCrossentropy", from_logits=True), "sparse_logits", (1,), (4,)),
    ("kl_divergence", "dist", (4,), (4,)),
    ("KLDivergence", "pos", (2,), (2,)),
    ("poisson", "pos", (3,), (3,)),
    ("hinge", "prob", (3,), (3,)),
    ("Hinge", "pm1", (2,), (2,)),
    ("squared_hinge", "pm1", (3,), (3,)),
    ("SquaredHinge", "prob", (1,), (1,)),
    ("categorical_hinge", "onehot", (4,), (4,)),
    ("top_k_categorical_accuracy", "onehot_logits", (6,), (6,)),
    (_cfg("TopKCategoricalAccuracy", k=2), "onehot_logits", (3, 6), (3, 6)),
    ("sparse_top_k_categorical_accuracy", "sparse_logits", (), (7,)),
    (_cfg("SparseTopKCategoricalAccuracy", k=2), "sparse_logits", (1,), (6,)),
    (_cfg("SparseTopKCategoricalAccuracy", k=3, from_sorted_ids=True), "sorted_ids", (), (6,)),
    ("true_positives", "scores", (1,), (1,)),
    ("FalsePositives", "scores", (3,), (3,)),
    (_cfg("TrueNegatives", thresholds=0.3), "scores", (), (1,)),
    (_cfg("FalseNegatives", thresholds=[0.7]), "scores", (2,), (2,)),
    ("precision", "scores", (3,), (3,)),
    ("Recall", "scores", (1,), (1,)),
    (_cfg("Precision", top_k=2), "scores", (5,), (5,)),
    (_cfg("Recall", top_k=2, thresholds=0.4), "scores", (5,), (5,)),
    (_cfg("Precision", class_id=1, thresholds=0.3), "scores", (3,), (3,)),
    (_cfg("Recall", class_id=2), "scores", (3,), (3,)),
    ("auc", "scores", (1,), (1,)),
    ("AUC", "scores", (3,), (3,)),
    (_cfg("AUC", curve="PR"), "scores", (2,), (2,)),
    (_cfg("AUC", curve="PR", summation_method="majoring"), "scores", (1,), (1,)),
    (_cfg("AUC", summation_method="minoring", num_thresholds=10), "scores", (), (1,)),
    (_cfg("AUC", curve="PRGAIN"), "scores", (2,), (2,)),
    (_cfg("AUC", multi_label=True), "scores", (3,), (3,)),
    (
        _cfg("AUC", multi_label=True, num_labels=3, label_weights=[0.5, 1, 2], curve="PR"),
        "scores",
        3,
        3,
    ),
    (_cfg("AUC", label_weights=[0.5, 1.0, 2.0]), "scores", (3,), (3,)),
    (_cfg("AUC", from_logits=True), "logits", (2,), (2,)),
    (_cfg("AUC", thresholds=[0.9, 0.1, 0.5]), "scores", (2,), (2,)),
    (_cfg("AUC", thresholds=[0.25, 0.5, 0.75], curve="PR"), "scores", (2,), (2,)),
]


def _ids(case: Any) -> str:
    return case if isinstance(case, str) else f"{case['class_name']}{case['config']}"


@pytest.mark.parametrize("weight_tail", [None, ()])
@pytest.mark.parametrize(("identifier", "kind", "y_tail", "p_tail"), CASES,
                         ids=[_ids(c[0]) for c in CASES])  # fmt: skip
def test_running_values_match_keras(keras, identifier, kind, y_tail, p_tail, weight_tail):
    y_tail, p_tail = ((t,) if isinstance(t, int) else t for t in (y_tail, p_tail))
    from keras.src.trainers.compile_utils import get_metric

    y_shape, p_shape = (BATCHES[0], *y_tail), (BATCHES[0], *p_tail)
    ours = metrics.get(identifier, ("metrics", 0), y_true_shape=y_shape, y_pred_shape=p_shape)
    # Unnamed Keras metrics are numbered per process; free_memory=False skips Keras's gc.collect().
    keras.backend.clear_session(free_memory=False)
    theirs = get_metric(identifier, keras.ops.zeros(y_shape), keras.ops.zeros(p_shape))
    assert type(ours).__name__ == type(theirs).__name__
    assert ours.name == theirs.name
    assert ours.direction == getattr(theirs, "_direction", None)
    # Keras keeps label_weights as a tensor in its config.
    want_config = {k: v.tolist() if hasattr(v, "tolist") else v
                   for k, v in theirs.get_config().items()}  # fmt: skip
    assert ours.get_config() == want_config

    def batch(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        y, p = _data(kind, n, y_tail, p_tail)
        if weight_tail is None:
            return y, p, None
        w = RNG.uniform(0.0, 2.0, (n, *weight_tail)).astype(np.float32)
        w[0] = 0.0
        return y, p, w

    assert_runs_like_keras(ours, theirs, batch, BATCHES, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(
    ("identifier", "w_shape"),
    [("precision", (6, 3)), ("auc", (6, 1)), ("r2_score", (6, 3)), ("rmse_", (6, 1))],
)
def test_weights_of_other_shapes(keras, identifier, w_shape):
    identifier = "root_mean_squared_error" if identifier == "rmse_" else identifier
    from keras.src.trainers.compile_utils import get_metric

    ours = metrics.get(identifier, (), y_true_shape=(6, 3), y_pred_shape=(6, 3))
    theirs = get_metric(identifier, keras.ops.zeros((6, 3)), keras.ops.zeros((6, 3)))
    for _ in range(3):
        y, p = _data("scores", 6, (3,), (3,))
        w = RNG.uniform(0, 2, w_shape).astype(np.float32)
        ours.update_state(torch.tensor(y), torch.tensor(p), torch.tensor(w))
        theirs.update_state(y, p, sample_weight=w)
    np.testing.assert_allclose(ours.result().numpy(), np.asarray(theirs.result()), rtol=RTOL)


def test_default_names_are_plain_every_time():
    for _ in range(2):
        assert metrics.get({"class_name": "AUC"}, (), y_true_shape=(2, 1),
                           y_pred_shape=(2, 1)).name == "auc"  # fmt: skip
        assert metrics.get({"class_name": "Precision"}, (), y_true_shape=(2, 1),
                           y_pred_shape=(2, 1)).name == "precision"  # fmt: skip


def test_result_before_any_update_is_zero():
    for name in ("auc", "precision", "true_positives", "r2_score", "root_mean_squared_error"):
        m = metrics.get(name, (), y_true_shape=(2, 1), y_pred_shape=(2, 1))
        assert m.result().item() == 0.0


@pytest.mark.parametrize(
    ("identifier", "loc"),
    [(_cfg("Precision", thresholds=[0.2, 0.5]), ("m", "config", "thresholds")),
     (_cfg("TruePositives", thresholds=1.5), ("m", "config", "thresholds")),
     (_cfg("R2Score", class_aggregation=None), ("m", "config", "class_aggregation")),
     (_cfg("R2Score", num_regressors=-1), ("m", "config", "num_regressors")),
     (_cfg("AUC", curve="DET"), ("m", "config", "curve")),
     (_cfg("AUC", num_thresholds=1), ("m", "config", "num_thresholds")),
     (_cfg("AUC", num_labels=3), ("m", "config", "num_labels")),
     (_cfg("SparseCategoricalCrossentropy", ignore_class=0), ("m", "config", "ignore_class")),
     (_cfg("TopKCategoricalAccuracy", k=0), ("m", "config", "k"))],
)  # fmt: skip
def test_bad_configs_name_the_field(identifier, loc):
    with pytest.raises(ConfigError) as err:
        metrics.get(identifier, ("m",), y_true_shape=(2, 1), y_pred_shape=(2, 1))
    assert err.value.loc == loc


def test_bad_inputs_are_data_errors():
    r2 = metrics.get("r2_score", (), y_true_shape=(4, 2), y_pred_shape=(4, 2))
    r2.update_state(torch.zeros(4, 2), torch.zeros(4, 2))
    with pytest.raises(DataError):
        r2.update_state(torch.zeros(4, 3), torch.zeros(4, 3))
    auc = metrics.get(_cfg("AUC", multi_label=True), (), y_true_shape=(4,), y_pred_shape=(4,))
    with pytest.raises(DataError):
        auc.update_state(torch.zeros(4, 2, 2), torch.zeros(4, 2, 2))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_updates_never_synchronise_on_cuda():
    cuda = torch.device("cuda")
    names = [c[0] for c in CASES if c[1] == "scores" or c[0] in ("hinge", "r2_score")]
    ms = [metrics.get(i, (), y_true_shape=(8, 3), y_pred_shape=(8, 3)) for i in names]
    y = torch.randint(0, 2, (8, 3), device=cuda).float()
    p, w = torch.rand(8, 3, device=cuda), torch.rand(8, device=cuda)
    for m in ms:  # the first update builds state and cached constants
        m.update_state(y, p, w)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for m in ms:
            m.update_state(y, p, w)
            m.update_state(y, p)
        results = [m.result() for m in ms]
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(r.device.type == "cuda" and r.shape == () for r in results)
