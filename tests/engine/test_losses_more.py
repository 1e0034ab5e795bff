"""The losses beyond MSE/MAE/crossentropy against Keras 3 (torch backend): values with and
without sample weights, (N,) vs (N, 1) labels, non-default arguments, gradients, names, configs
and label checks."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from app.engine import losses
from app.engine.config.errors import ConfigError, DataError
from tests.engine.test_losses import ATOL, RTOL, _compare, _keras_loss
from tests.support.loss_checks import assert_bad_config_names, assert_check_labels

N = 7
RNG = np.random.default_rng(4321)


def _normal(shape: tuple[int, ...], scale: float = 2.0) -> np.ndarray:
    return RNG.normal(0, scale, shape).astype(np.float32)


def _weights(shape: tuple[int, ...]) -> np.ndarray:
    w = RNG.uniform(0.0, 2.0, shape).astype(np.float32)
    w.reshape(-1)[0] = 0.0
    return w


def _data(kind: str, y_shape: tuple[int, ...], p_shape: tuple[int, ...]):
    """Labels and predictions that reach each loss's clipping and special cases."""
    y, p = _normal(y_shape), _normal(p_shape)
    if kind == "zero_label":  # MAPE's max(|y|, eps) floor
        y.reshape(-1)[0] = 0.0
    elif kind == "probs":  # KL's [eps, 1] clip: zeros, ones and values above 1
        y, p = RNG.uniform(0, 1.2, y_shape), RNG.uniform(0, 1.2, p_shape)
        y.reshape(-1)[:2], p.reshape(-1)[:2] = (0.0, 1.0), (1.0, 0.0)
    elif kind == "counts":  # Poisson: non-negative rates, one exactly 0
        y, p = RNG.integers(0, 5, y_shape), RNG.uniform(0, 3, p_shape)
        p.reshape(-1)[0] = 0.0
    elif kind == "binary":  # hinge's {0, 1} -> {-1, 1} mapping, and the corner 1 - y·p = 0
        y = RNG.integers(0, 2, y_shape)
        y.reshape(-1)[0], p.reshape(-1)[0] = 1, 1.0
    elif kind == "signs":
        y = RNG.choice([-1.0, 1.0], y_shape)
    elif kind == "mixed":  # a -1 in the batch: no mapping
        y = RNG.integers(-1, 2, y_shape)
        y.reshape(-1)[0] = -1
    elif kind == "unit":  # Dice/Tversky: masks and probabilities
        y, p = RNG.integers(0, 2, y_shape), RNG.uniform(0, 1, p_shape)
    return np.asarray(y, np.float32), np.asarray(p, np.float32)


ELEMENTWISE = [  # (identifiers, data kind)
    (["mape", "MAPE", "mean_absolute_percentage_error", "MeanAbsolutePercentageError"],
     "zero_label"),
    (["msle", "MSLE", "mean_squared_logarithmic_error", "MeanSquaredLogarithmicError"],
     "normal"),
    (["huber", "Huber"], "normal"),
    (["log_cosh", "LogCosh"], "normal"),
    (["kld", "KLD", "kl_divergence", "KLDivergence"], "probs"),
    (["poisson", "Poisson"], "counts"),
    (["hinge", "Hinge"], "binary"),
    (["hinge"], "signs"),
    (["hinge"], "mixed"),
    (["squared_hinge", "SquaredHinge"], "binary"),
    (["squared_hinge"], "mixed"),
    (["cosine_similarity", "CosineSimilarity"], "normal"),
]  # fmt: skip
CASES = [(ident, kind) for idents, kind in ELEMENTWISE for ident in idents]

SHAPES = [  # (y shape, p shape, weight shape or None)
    ((N,), (N, 1), (N,)),
    ((N, 1), (N,), None),
    ((N, 1), (N, 1), (N, 1)),
    ((N, 3), (N, 3), (N,)),
    ((N, 4, 2), (N, 4, 2), (N, 4)),
]


@pytest.mark.parametrize(("y_shape", "p_shape", "w_shape"), SHAPES)
@pytest.mark.parametrize(("identifier", "kind"), CASES)
def test_elementwise_losses(keras, identifier, kind, y_shape, p_shape, w_shape):
    y, p = _data(kind, y_shape, p_shape)
    _compare(keras, identifier, y, p)
    if w_shape is not None:
        _compare(keras, identifier, y, p, _weights(w_shape))


def test_cosine_similarity_of_a_zero_vector_is_zero(keras):
    y, p = _normal((N, 3)), _normal((N, 3))
    y[1], p[2] = 0.0, 0.0
    _compare(keras, "cosine_similarity", y, p, _weights((N,)))
    values = losses.get("cosine_similarity", ()).call(torch.tensor(y), torch.tensor(y))
    assert float(values[0]) < -0.99  # the loss is the *negative* cosine


@pytest.mark.parametrize("delta", [0.3, 1.0, 2.5, 0.0])
def test_huber_delta(keras, delta):
    y, p = _normal((N, 3)), _normal((N, 3))
    p[0, 0] = y[0, 0] + delta  # exactly at the switch
    cfg = {"class_name": "Huber", "config": {"delta": delta}}
    _compare(keras, cfg, y, p)
    _compare(keras, cfg, y, p, _weights((N,)))


@pytest.mark.parametrize("axis", [1, -2, 2])
def test_cosine_similarity_axis(keras, axis):
    y, p = _normal((N, 3, 2)), _normal((N, 3, 2))
    cfg = {"class_name": "CosineSimilarity", "config": {"axis": axis}}
    _compare(keras, cfg, y, p)
    _compare(keras, cfg, y, p, _weights((N, 2) if axis in (1, -2) else (N, 3)))


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("labels", ["onehot", "signs"])
def test_categorical_hinge(keras, labels, weighted):
    y = np.eye(4, dtype=np.float32)[RNG.integers(0, 4, N)]
    if labels == "signs":
        y = 2 * y - 1
    p = _normal((N, 4))
    p[0] = -1.0  # ties in the max over the wrong classes
    _compare(keras, "categorical_hinge", y, p, _weights((N,)) if weighted else None)
    _compare(keras, "CategoricalHinge", y, p)


# -- focal crossentropies --------------------------------------------------------------------

BINARY_SHAPES = [((N,), (N, 1), (N,)), ((N, 1), (N, 1), (N,)), ((N, 3), (N, 3), (N, 1)),
                 ((N, 4, 2), (N, 4, 2), (N, 4))]  # fmt: skip


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize(
    "cfg",
    [{}, {"from_logits": True}, {"label_smoothing": 0.1},
     {"apply_class_balancing": True, "alpha": 0.4, "gamma": 3.0},
     {"from_logits": True, "apply_class_balancing": True, "label_smoothing": 0.2, "gamma": 0.0}],
)  # fmt: skip
@pytest.mark.parametrize(("y_shape", "p_shape", "w_shape"), BINARY_SHAPES)
def test_binary_focal_crossentropy(keras, y_shape, p_shape, w_shape, cfg, weighted):
    y = RNG.integers(0, 2, y_shape).astype(np.float32)
    if cfg.get("from_logits"):
        p = _normal(p_shape, 4.0)
    else:
        p = RNG.uniform(0, 1, p_shape).astype(np.float32)
        p.reshape(-1)[:2] = (0.0, 1.0)
    w = _weights(w_shape) if weighted else None
    _compare(keras, {"class_name": "BinaryFocalCrossentropy", "config": cfg}, y, p, w)
    if not cfg:
        _compare(keras, "binary_focal_crossentropy", y, p, w)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize(
    "cfg",
    [{}, {"from_logits": True}, {"label_smoothing": 0.2, "gamma": 1.5},
     {"alpha": [0.1, 0.2, 0.3, 0.4]}, {"from_logits": True, "alpha": 0.5, "gamma": 0.0}],
)  # fmt: skip
def test_categorical_focal_crossentropy(keras, cfg, weighted):
    y = np.eye(4, dtype=np.float32)[RNG.integers(0, 4, N)]
    p = _normal((N, 4), 3.0) if cfg.get("from_logits") else RNG.uniform(0, 2, (N, 4))
    p = np.asarray(p, np.float32)
    if not cfg.get("from_logits"):
        p[3] = [0.0, 1.0, 0.0, 0.0]
    w = _weights((N,)) if weighted else None
    _compare(keras, {"class_name": "CategoricalFocalCrossentropy", "config": cfg}, y, p, w)
    if not cfg:
        _compare(keras, "categorical_focal_crossentropy", y, p, w)


def test_categorical_focal_crossentropy_on_another_axis(keras):
    y = np.moveaxis(np.eye(3, dtype=np.float32)[RNG.integers(0, 3, (N, 2))], 2, 1).copy()
    p = RNG.uniform(0.05, 1.0, (N, 3, 2)).astype(np.float32)
    cfg = {"from_logits": False, "label_smoothing": 0.1, "axis": 1}
    _compare(keras, {"class_name": "CategoricalFocalCrossentropy", "config": cfg}, y, p)


# -- Dice and Tversky ------------------------------------------------------------------------

OVERLAP_SHAPES = [((N,), (N, 1)), ((N, 1), (N, 1)), ((N, 4, 3), (N, 4, 3))]


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize(
    "cfg",
    [("Dice", {}), ("dice", None), ("Dice", {"axis": -1}), ("Tversky", {}), ("tversky", None),
     ("Tversky", {"alpha": 0.7, "beta": 0.3, "axis": -1}), ("Tversky", {"alpha": 0.2})],
)  # fmt: skip
@pytest.mark.parametrize(("y_shape", "p_shape"), OVERLAP_SHAPES)
def test_overlap_losses(keras, y_shape, p_shape, cfg, weighted):
    name, config = cfg
    identifier = name if config is None else {"class_name": name, "config": config}
    y, p = _data("unit", y_shape, p_shape)
    summed = None if config is None else config.get("axis")
    w = None
    if weighted:  # one value per sample and per axis kept (or one for the whole batch)
        w = _weights((N,) if summed is None or len(p_shape) == 2 else p_shape[:-1])
    _compare(keras, identifier, y, p, w)


@pytest.mark.parametrize("axis", [[1, 2], (1, 2), [2], 1])
@pytest.mark.parametrize("name", ["Dice", "Tversky"])
def test_overlap_losses_over_several_axes(keras, name, axis):
    y, p = _data("unit", (N, 4, 3), (N, 4, 3))
    identifier = {"class_name": name, "config": {"axis": axis}}
    _compare(keras, identifier, y, p)
    if axis in ([1, 2], (1, 2)):
        _compare(keras, identifier, y, p, _weights((N,)))


# -- reductions and gradients -----------------------------------------------------------------


@pytest.mark.parametrize("reduction", ["sum", "mean", "mean_with_sample_weight"])
@pytest.mark.parametrize("name", ["Huber", "KLDivergence", "Hinge", "BinaryFocalCrossentropy",
                                  "Dice", "CosineSimilarity"])  # fmt: skip
def test_reductions(keras, name, reduction):
    y, p = _data("unit", (N, 2), (N, 2))
    cfg = {"class_name": name, "config": {"reduction": reduction}}
    _compare(keras, cfg, y, p)
    _compare(keras, cfg, y, p, _weights((N,)))


GRADIENT_CASES = [
    ("mape", "zero_label"), ("msle", "normal"), ("huber", "normal"), ("log_cosh", "normal"),
    ("kld", "probs"), ("poisson", "counts"), ("hinge", "binary"), ("squared_hinge", "binary"),
    ("categorical_hinge", "binary"), ("cosine_similarity", "normal"), ("dice", "unit"),
    ("tversky", "unit"), ("binary_focal_crossentropy", "unit"),
    ("categorical_focal_crossentropy", "unit"),
]  # fmt: skip


@pytest.mark.parametrize(("identifier", "kind"), GRADIENT_CASES)
def test_gradients_match_keras(keras, identifier, kind):
    y, p = _data(kind, (N, 3), (N, 3))
    if identifier == "categorical_focal_crossentropy":
        y = np.eye(3, dtype=np.float32)[RNG.integers(0, 3, N)]
    if identifier == "msle":
        p[0, 0] = 0.0  # below the eps floor
    if identifier == "huber":
        p[0, 0] = y[0, 0] + 1.0  # |error| == delta
    if identifier == "cosine_similarity":
        p[1] = 0.0
    w = _weights((N,))
    ours_p = torch.tensor(p, requires_grad=True)
    losses.get(identifier, ())(torch.tensor(y), ours_p, torch.tensor(w)).backward()
    theirs_p = torch.tensor(p, requires_grad=True)
    _keras_loss(keras, identifier, y, p)(torch.tensor(y), theirs_p, torch.tensor(w)).backward()
    assert ours_p.grad is not None and theirs_p.grad is not None
    np.testing.assert_allclose(ours_p.grad.numpy(), theirs_p.grad.numpy(), rtol=RTOL, atol=ATOL)


# -- identifiers, names and configs ------------------------------------------------------------

NOT_SUPPORTED = {"Loss", "LossFunctionWrapper"}


def test_every_keras_loss_name_is_registered(keras):
    from keras.src.losses import ALL_OBJECTS_DICT

    keras_names = set(ALL_OBJECTS_DICT) - NOT_SUPPORTED
    assert keras_names == set(losses.LOSSES.all_names())


@pytest.mark.parametrize("identifier", losses.LOSSES.all_names())
def test_registered_names_resolve_as_in_keras(keras, identifier):
    ours = losses.get(identifier, ("loss",))
    theirs = keras.losses.get(identifier)
    if isinstance(theirs, keras.losses.Loss):
        assert type(theirs).__name__ == type(ours).__name__ == identifier
    else:  # a function: its class's default name, except Huber's
        want = {"huber": "huber_loss"}.get(theirs.__name__, theirs.__name__)
        assert ours.default_name == want and ours.name == identifier


@pytest.mark.parametrize(
    "identifier",
    ["huber_loss", "logcosh", "kullback_leibler_divergence", "cosine_proximity", "Kld",
     "binary_focal_loss", "CategoricalGeneralizedCrossEntropy",
     "categorical_generalized_cross_entropy", "dice_loss"],
)  # fmt: skip
def test_unknown_names_are_config_errors(identifier):
    with pytest.raises(ConfigError) as err:
        losses.get(identifier, ("compile", "loss"))
    assert err.value.loc == ("compile", "loss")


NON_DEFAULT = [
    ("Huber", {"delta": 2.5, "name": "h", "reduction": "sum"}),
    ("CosineSimilarity", {"axis": 1}),
    ("BinaryFocalCrossentropy", {"apply_class_balancing": True, "alpha": 0.4, "gamma": 3.0,
                                 "from_logits": True, "label_smoothing": 0.1, "axis": -2}),
    ("CategoricalFocalCrossentropy", {"alpha": [0.2, 0.8], "gamma": 1.0, "from_logits": True,
                                      "label_smoothing": 0.3, "axis": 1}),
    ("Dice", {"axis": [1, 2]}),
    ("Dice", {"axis": -1, "reduction": "mean_with_sample_weight"}),
    ("Tversky", {"alpha": 0.3, "beta": 0.7, "axis": [1]}),
]  # fmt: skip


@pytest.mark.parametrize(("class_name", "kwargs"), NON_DEFAULT)
def test_non_default_configs_match_keras(keras, class_name, kwargs):
    ours = losses.get({"class_name": class_name, "config": kwargs}, ())
    theirs = getattr(keras.losses, class_name)(**kwargs)
    assert ours.get_config() == theirs.get_config()
    for key, value in kwargs.items():  # kept on the instance even where Keras leaves it out
        assert getattr(ours, key) == value
    again = losses.get({"class_name": class_name, "config": ours.get_config()}, ())
    assert again.get_config() == ours.get_config()


def test_keras_leaves_huber_delta_and_cosine_axis_out_of_configs(keras):
    assert "delta" not in keras.losses.Huber(delta=2.0).get_config()
    assert "axis" not in keras.losses.CosineSimilarity(axis=1).get_config()
    assert losses.get({"class_name": "Huber", "config": {"delta": 2.0}}, ()).name == "huber_loss"


@pytest.mark.parametrize(
    ("identifier", "loc"),
    [({"class_name": "Huber", "config": {"delta": -1}}, ("l", "config", "delta")),
     ({"class_name": "Huber", "config": {"delta": "1"}}, ("l", "config", "delta")),
     ({"class_name": "CosineSimilarity", "config": {"axis": 1.5}}, ("l", "config", "axis")),
     ({"class_name": "LogCosh", "config": {"delta": 1}}, ("l", "config", "delta")),
     ({"class_name": "BinaryFocalCrossentropy", "config": {"gamma": -1}},
      ("l", "config", "gamma")),
     ({"class_name": "BinaryFocalCrossentropy", "config": {"alpha": 2}},
      ("l", "config", "alpha")),
     ({"class_name": "BinaryFocalCrossentropy", "config": {"apply_class_balancing": 1}},
      ("l", "config", "apply_class_balancing")),
     ({"class_name": "CategoricalFocalCrossentropy", "config": {"alpha": [0.5, "x"]}},
      ("l", "config", "alpha", "1")),
     ({"class_name": "CategoricalFocalCrossentropy", "config": {"alpha": []}},
      ("l", "config", "alpha")),
     ({"class_name": "CategoricalFocalCrossentropy", "config": {"label_smoothing": 2}},
      ("l", "config", "label_smoothing")),
     ({"class_name": "Dice", "config": {"axis": "all"}}, ("l", "config", "axis")),
     ({"class_name": "Dice", "config": {"axis": [1, None]}}, ("l", "config", "axis", "1")),
     ({"class_name": "Dice", "config": {"axis": []}}, ("l", "config", "axis")),
     ({"class_name": "Tversky", "config": {"beta": None}}, ("l", "config", "beta")),
     ({"class_name": "Poisson", "config": {"reduction": "none"}}, ("l", "config", "reduction"))],
)  # fmt: skip
def test_bad_configs_name_the_field(identifier, loc):
    assert_bad_config_names(identifier, loc)


# -- label checks --------------------------------------------------------------------------------

LABEL_CASES = [
    # (loss, y, output shape, error substring or None)
    ("mape", np.zeros((3,)), (None, 1), None),
    ("msle", np.zeros((3, 4)), (3, 4), None),
    ("huber", np.zeros((3, 1)), (3,), None),
    ("huber", np.zeros((3, 4)), (3, 1), "expected labels of shape (3, 1)"),
    ("log_cosh", np.zeros((3,)), (3, 4), "expected labels of shape (3, 4)"),
    ("kld", np.full((3, 4), 0.25), (3, 4), None),
    ("poisson", np.zeros((3, 2)), (3, 2, 1), None),
    ("poisson", np.zeros((3, 2)), (3, 3), "expected labels of shape (3, 3)"),
    ("hinge", np.array([0, 1, 1]), (3, 1), None),
    ("hinge", np.array([-1, 1, 0]), (3, 1), None),
    ("squared_hinge", np.zeros((3, 2)), (3, 1), "expected labels of shape (3, 1)"),
    ("cosine_similarity", np.ones((3, 4)), (3, 4), None),
    ("cosine_similarity", np.ones((3, 4)), (3, 5), "expected labels of shape (3, 5)"),
    ("categorical_hinge", np.eye(3)[[0, 2, 1]], (3, 3), None),
    ("categorical_hinge", np.array([0, 2, 1]), (3, 3), "(one-hot)"),
    ("binary_focal_crossentropy", np.array([0, 1, 1]), (None, 1), None),
    ("binary_focal_crossentropy", np.array([0, 0.5, 1]), (3, 1), None),
    ("binary_focal_crossentropy", np.array([0, 2, 1]), (3, 1), "in [0, 1]"),
    ("binary_focal_crossentropy", np.zeros((3,)), (3, 2), "expected labels of shape (3, 2)"),
    ("categorical_focal_crossentropy", np.eye(3)[[0, 2, 1, 1]], (None, 3), None),
    ("categorical_focal_crossentropy", np.array([[0], [2], [1]]), (3, 3), "(one-hot)"),
    ("dice", np.zeros((3,)), (3, 1), None),
    ("dice", np.zeros((3, 4, 2)), (3, 4, 2), None),
    ("dice", np.zeros((3, 4)), (3, 2), "expected labels of shape (3, 2)"),
    ("tversky", np.ones((3, 2)), (None, 2), None),
    ("tversky", np.ones((3,)), (3, 2), "expected labels of shape (3, 2)"),
]


@pytest.mark.parametrize(("identifier", "y", "out_shape", "error"), LABEL_CASES)
def test_check_labels(identifier, y, out_shape, error):
    assert_check_labels(identifier, y, out_shape, error)


def test_check_labels_agrees_with_keras_on_what_runs(keras):
    for identifier, y, out_shape, error in LABEL_CASES:
        if error is None:
            shape = (y.shape[0], *out_shape[1:])
            _compare(keras, identifier, y.astype(np.float32), np.full(shape, 0.5, np.float32))


@pytest.mark.parametrize(
    ("identifier", "y", "out_shape", "error"),
    [({"class_name": "CosineSimilarity", "config": {"axis": 0}}, np.ones((3, 4)), (3, 4), "axis"),
     ({"class_name": "CosineSimilarity", "config": {"axis": 2}}, np.ones((3, 4)), (3, 4), "axis"),
     ({"class_name": "BinaryFocalCrossentropy", "config": {"axis": 0}}, np.ones((3, 4)), (3, 4),
      "axis"),
     ({"class_name": "CategoricalFocalCrossentropy", "config": {"alpha": [0.5, 0.5]}},
      np.eye(3), (3, 3), "alpha has 2 class weights; expected one or 3"),
     ({"class_name": "Dice", "config": {"axis": 3}}, np.ones((3, 4, 2)), (3, 4, 2),
      "out of range"),
     ({"class_name": "Tversky", "config": {"axis": [1, -2]}}, np.ones((3, 4, 2)), (3, 4, 2),
      "repeats")],
)  # fmt: skip
def test_arguments_that_do_not_fit_the_outputs(identifier, y, out_shape, error):
    loss = losses.get(identifier, ())
    with pytest.raises(DataError) as err:
        loss.check_labels(y, out_shape, ("y",))
    assert error in err.value.message


def test_binary_focal_crossentropy_refuses_mismatched_shapes_at_run_time():
    loss: Any = losses.get("binary_focal_crossentropy", ())
    with pytest.raises(DataError):
        loss(torch.zeros((4, 2)), torch.zeros((4, 3)))
