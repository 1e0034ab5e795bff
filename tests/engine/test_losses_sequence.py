"""Circle and CTC against Keras 3 (torch backend): reduced and per-sample values by class name,
function name and config, with and without sample weights, gradients, Keras masks, configs and
label checks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from app.engine import losses
from app.engine.config.errors import DataError
from tests.engine.test_losses import ATOL, RTOL, _compare
from tests.support.loss_checks import assert_bad_config_names, assert_check_labels

RNG = np.random.default_rng(8642)


def _weights(n: int) -> np.ndarray:
    w = RNG.uniform(0.0, 2.0, n).astype(np.float32)
    w[0] = 0.0
    return w


# -- Circle --------------------------------------------------------------------------------------


def _embeddings(n: int, d: int, unit: bool = True) -> np.ndarray:
    e = RNG.normal(0, 1, (n, d)).astype(np.float32)
    return e / np.linalg.norm(e, axis=1, keepdims=True) if unit else e


def _class_ids(n: int, column: bool) -> np.ndarray:
    """Ids with repeats, a singleton class (a row with no positive, which Keras masks out) and
    a negative id."""
    y = RNG.integers(0, max(2, n // 3), n)
    y[-1] = -5
    return y.reshape(-1, 1) if column else y


CIRCLE_SHAPES = [  # (N, D, labels as a column)
    (7, 3, False),
    (7, 3, True),
    (16, 8, False),
    (2, 5, True),
    (6, 1, False),  # D = 1: Keras expands (N,) labels to (N, 1)
]
CIRCLE_CONFIGS = [
    {"remove_diagonal": False},
    {"gamma": 16.0, "margin": 0.25},
    {"gamma": 80, "margin": 0.4, "name": "c", "reduction": "sum"},
    {"gamma": 2.0, "reduction": "mean_with_sample_weight"},
    {"margin": 0.1, "reduction": "mean"},
]


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize(("n", "d", "column"), CIRCLE_SHAPES)
@pytest.mark.parametrize("identifier", ["Circle", "circle"])
def test_circle_by_name(keras, identifier, n, d, column, weighted):
    y, p = _class_ids(n, column), _embeddings(n, d)
    _compare(keras, identifier, y, p, _weights(n) if weighted else None)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize(("n", "d", "column"), CIRCLE_SHAPES)
@pytest.mark.parametrize("config", CIRCLE_CONFIGS)
def test_circle_configs(keras, config, n, d, column, weighted):
    y, p = _class_ids(n, column), _embeddings(n, d)
    _compare(
        keras, {"class_name": "Circle", "config": config}, y, p, _weights(n) if weighted else None
    )


@pytest.mark.parametrize(
    "y",
    [np.zeros(5, np.int64),  # no negatives: every value 0, all masked, loss 0
     np.arange(5),  # no positives
     np.array([3, 3, 1, 1, 1])],
)  # fmt: skip
@pytest.mark.parametrize("unit", [True, False])
def test_circle_batches_without_positives_or_negatives(keras, y, unit):
    p = _embeddings(5, 4, unit)
    p[1] = p[0]  # a distance of exactly 0: the zero floor's tie
    _compare(keras, "Circle", y, p)
    _compare(keras, "circle", y, p, _weights(5))


def _gradients(loss: Any, y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    x = torch.tensor(p, requires_grad=True)
    loss(torch.tensor(y), x, sample_weight=torch.tensor(w)).backward()
    assert x.grad is not None
    return x.grad.numpy()


@pytest.mark.parametrize("config", [{}, {"remove_diagonal": False, "gamma": 8.0}])
def test_circle_gradients(keras, config):
    y, p, w = _class_ids(9, False), _embeddings(9, 4), _weights(9)
    p[2] = p[1]
    ours = losses.get({"class_name": "Circle", "config": config}, ())
    theirs = keras.losses.Circle(**config)
    np.testing.assert_allclose(
        _gradients(ours, y, p, w), _gradients(theirs, y, p, w), rtol=RTOL, atol=ATOL
    )


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum"])
def test_circle_and_an_output_mask(keras, reduction):
    # Keras and-s the outputs' mask with its own mask of the values > 0.
    y, p, w = _class_ids(8, False), _embeddings(8, 3), _weights(8)
    mask = np.array([1, 1, 0, 1, 1, 1, 0, 1], bool)
    from keras.src.backend import set_keras_mask

    theirs_p = torch.tensor(p)
    set_keras_mask(theirs_p, torch.tensor(mask))
    want = keras.losses.Circle(reduction=reduction)(y, theirs_p, sample_weight=w)
    ours = losses.get({"class_name": "Circle", "config": {"reduction": reduction}}, ())
    got = ours(torch.tensor(y), torch.tensor(p), torch.tensor(w), mask=torch.tensor(mask))
    np.testing.assert_allclose(got.numpy(), np.asarray(want), rtol=RTOL, atol=ATOL)


def test_circle_weights_as_a_column_and_of_the_wrong_shape(keras):
    y, p, w = _class_ids(6, False), _embeddings(6, 3), _weights(6)
    _compare(keras, "circle", y, p, w.reshape(-1, 1))
    with pytest.raises(DataError) as err:
        losses.get("circle", ())(torch.tensor(y), torch.tensor(p), torch.ones(6, 2))
    assert err.value.loc == ("sample_weight",)


# -- CTC -----------------------------------------------------------------------------------------


def _label_rows(n: int, width: int, steps: int, classes: int) -> np.ndarray:
    """Zero-padded rows of feasible lengths, including an empty row, a full-width row where it
    fits, and repeated neighbours (which need a blank between them)."""
    y = np.zeros((n, width), np.int64)
    for i in range(n):
        length = 0 if i == 1 else int(RNG.integers(1, width + 1))
        row = RNG.integers(1, classes, length)
        if i == 2 and length >= 2:
            row[1] = row[0]
        while length + int(np.sum(row[1:] == row[:-1])) > steps:
            row, length = row[:-1], length - 1
        y[i, :length] = row
    return y


CTC_SHAPES = [  # (N, L, T, C)
    (4, 3, 6, 5),
    (7, 1, 4, 3),
    (5, 6, 12, 10),
    (3, 8, 5, 4),  # labels wider than T: the rows' real lengths still fit
    (2, 4, 4, 2),  # one class besides the blank: repeats everywhere
]


def _logits(n: int, steps: int, classes: int) -> np.ndarray:
    return RNG.normal(0, 3, (n, steps, classes)).astype(np.float32)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize(("n", "width", "steps", "classes"), CTC_SHAPES)
@pytest.mark.parametrize(
    "identifier",
    ["CTC", "ctc", {"class_name": "CTC", "config": {"name": "seq", "reduction": "sum"}},
     {"class_name": "CTC", "config": {"reduction": "mean_with_sample_weight"}}],
)  # fmt: skip
def test_ctc(keras, identifier, n, width, steps, classes, weighted):
    y, p = _label_rows(n, width, steps, classes), _logits(n, steps, classes)
    w = _weights(n) if weighted else None
    _compare(keras, identifier, y, p, w)
    _compare(keras, identifier, y.astype(np.float32), p, w)  # float labels read the same


def test_ctc_tight_rows(keras):
    # Every row needs exactly T steps: one path, a large but finite loss.
    y = np.array([[1, 1, 2, 0], [3, 2, 1, 2]])
    _compare(keras, "ctc", y, _logits(2, 4, 4))
    _compare(keras, "ctc", np.array([[1, 1, 0, 0], [2, 0, 0, 0]]), _logits(2, 3, 3))


def test_ctc_gradients(keras):
    y, p, w = _label_rows(5, 4, 8, 6), _logits(5, 8, 6), _weights(5)
    ours = _gradients(losses.get("ctc", ()), y, p, w)
    np.testing.assert_allclose(ours, _gradients(keras.losses.CTC(), y, p, w), rtol=RTOL, atol=ATOL)


# -- configs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("class_name", "kwargs"),
    [("Circle", {"gamma": 16.0, "margin": 0.25, "remove_diagonal": False, "name": "c",
                 "reduction": "sum"}),
     ("Circle", {"reduction": "mean_with_sample_weight"}),
     ("CTC", {"name": "seq", "reduction": "mean"})],
)  # fmt: skip
def test_configs_round_trip_as_in_keras(keras, class_name, kwargs):
    theirs = getattr(keras.losses, class_name)(**kwargs)
    ours = losses.get({"class_name": class_name, "config": kwargs}, ())
    assert ours.get_config() == theirs.get_config()
    serialized = keras.saving.serialize_keras_object(theirs)
    assert losses.get(serialized, ()).get_config() == serialized["config"]
    again = losses.get({"class_name": class_name, "config": ours.get_config()}, ())
    assert again.get_config() == ours.get_config()


@pytest.mark.parametrize(
    ("identifier", "loc"),
    [({"class_name": "Circle", "config": {"gamma": -1}}, ("l", "config", "gamma")),
     ({"class_name": "Circle", "config": {"gamma": "80"}}, ("l", "config", "gamma")),
     ({"class_name": "Circle", "config": {"margin": None}}, ("l", "config", "margin")),
     ({"class_name": "Circle", "config": {"remove_diagonal": 1}},
      ("l", "config", "remove_diagonal")),
     ({"class_name": "Circle", "config": {"ref_labels": [1]}}, ("l", "config", "ref_labels")),
     ({"class_name": "CTC", "config": {"mask_index": 1}}, ("l", "config", "mask_index")),
     ({"class_name": "CTC", "config": {"reduction": "none"}}, ("l", "config", "reduction"))],
)  # fmt: skip
def test_bad_configs_name_the_field(identifier, loc):
    assert_bad_config_names(identifier, loc)


# -- label checks --------------------------------------------------------------------------------

LABEL_CASES = [
    # (loss, y, output shape, error substring or None)
    ("circle", np.array([0, 1, 1, 2]), (None, 8), None),
    ("circle", np.array([[0], [1], [-3.0]]), (3, 2), None),
    ("circle", np.array([0, 1, 1]), (3, 1), None),
    ("circle", np.array([0, 1.5, 1]), (3, 4), "integer class ids"),
    ("circle", np.zeros((3, 2)), (3, 4), "integer class labels (N,) or (N, 1)"),
    ("circle", np.zeros((3,)), (3, 4, 2), "against embeddings (N, D)"),
    ("circle", np.array([0, 2**25]), (2, 4), "[-2**24, 2**24]"),
    ("ctc", np.array([[1, 2, 0], [0, 0, 0]]), (None, 5, 3), None),
    ("ctc", np.array([[1, 1, 0]]), (1, 3, 2), None),
    ("ctc", np.array([[1, 2, 0, 0, 0, 0]]), (1, 2, 3), None),  # wider than T, fits
    ("ctc", np.array([[1, 1, 1]]), (1, None, 2), None),  # T unknown: no length check
    ("ctc", np.array([[1, 2.5]]), (1, 5, 4), "integer class ids"),
    ("ctc", np.array([[1, -1]]), (1, 5, 4), "[0, 4)"),
    ("ctc", np.array([[1, 4]]), (1, 5, 4), "[0, 4)"),
    ("ctc", np.array([[1, 2], [0, 3]]), (2, 5, 4), "a zero before a label in row 1"),
    ("ctc", np.array([[1, 0, 3]]), (1, 5, 4), "a zero before a label in row 0"),
    ("ctc", np.array([[1, 2], [1, 1]]), (2, 2, 4), "row 1 of the labels needs 3"),
    ("ctc", np.array([[1, 2, 3, 0]]), (1, 2, 4), "needs 3, received outputs with 2"),
    ("ctc", np.array([[0, 0]]), (1, 5, 1), "at least 2 classes"),
    ("ctc", np.array([1, 2]), (2, 5, 4), "label sequences (N, L)"),
    ("ctc", np.array([[1, 2]]), (1, 4), "logits (N, T, C)"),
]


@pytest.mark.parametrize(("identifier", "y", "out_shape", "error"), LABEL_CASES)
def test_check_labels(identifier, y, out_shape, error):
    assert_check_labels(identifier, y, out_shape, error)


def test_check_labels_agrees_with_keras_on_what_runs(keras):
    for identifier, y, out_shape, error in LABEL_CASES:
        if error is None:
            shape = tuple(d if d is not None else 4 for d in (y.shape[0], *out_shape[1:]))
            _compare(keras, identifier, y, RNG.normal(0, 1, shape).astype(np.float32))


def test_keras_scores_the_refused_ctc_rows_as_infinite_or_shifted(keras):
    # Why the checks refuse these: a row too long for T costs infinity, and a zero before a
    # label shortens Keras's length count, so it scores [1, 0] instead of [1, 3].
    p = _logits(1, 3, 4)
    assert np.isinf(np.asarray(keras.losses.CTC()(np.array([[1, 1, 1]]), p)))
    gap = keras.losses.CTC()(np.array([[1, 0, 3]]), p)
    shifted = keras.losses.CTC()(np.array([[1, 3, 0]]), p)
    assert float(gap) != float(shifted)


@pytest.mark.parametrize(
    ("identifier", "y", "p"),
    [("circle", np.zeros((3, 2)), np.zeros((3, 4))),
     ("circle", np.zeros(3), np.zeros((3, 4, 2))),
     ("ctc", np.zeros(3), np.zeros((3, 4, 2))),
     ("ctc", np.zeros((3, 2)), np.zeros((2, 4, 2)))],
)  # fmt: skip
def test_formulas_refuse_shapes_they_cannot_score(identifier, y, p):
    with pytest.raises(DataError, match="do not fit"):
        losses.get(identifier, ())(torch.tensor(y), torch.tensor(p, dtype=torch.float32))
