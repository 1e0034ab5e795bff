"""Normalization.adapt inside a model against Keras 3: the same model built by Keras from our
JSON, Keras's layers adapted with their own `adapt` (a deeper layer on the output of the
sub-model before it), weights and predictions compared; the unadapted rule, the fit helper and
errors that name the field."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from app.engine.config.errors import ConfigError, DataError
from app.engine.layers.normalization import Normalization
from app.engine.models.model import Model
from app.engine.training.adapt import (
    adapt_before_fit,
    adapt_model,
    check_adapt_size,
    normalization_layers,
)
from app.engine.training.compile import CompileSpec
from app.engine.training.fit_args import FitArgs
from app.engine.training.trainer import Trainer
from tests.support.keras_json import keras_json

RNG = np.random.default_rng(3)


def _sequential(shape: list[Any], *layers: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    entries = [{"class_name": "InputLayer", "config": {"batch_shape": shape}}]
    entries += [{"class_name": c, "config": k} for c, k in layers]
    return {"class_name": "Sequential", "config": {"name": "seq", "layers": entries}}


def _data(n: int, *shape: int) -> np.ndarray:
    # Offsets and scales far from 0 and 1, so an unadapted layer could not pass for adapted.
    return (RNG.normal(size=(n, *shape)) * 3.0 + 5.0).astype(np.float32)


def _predict(model: Model, x: Any) -> np.ndarray:
    with torch.no_grad():
        return model(x, training=False).numpy()  # type: ignore[union-attr]


def _assert_same(
    ours: Model, km: Any, x: np.ndarray | list[np.ndarray], keras_x: Any = None
) -> None:
    for got, want in zip(ours.get_weights(), km.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-7, atol=0)
    xt = torch.as_tensor(x) if isinstance(x, np.ndarray) else [torch.as_tensor(a) for a in x]
    want = km.predict(x if keras_x is None else keras_x, verbose=0)
    np.testing.assert_allclose(_predict(ours, xt), want, rtol=1e-6, atol=1e-6)


def test_two_normalizations_in_a_sequential_match_keras(keras: ModuleType) -> None:
    config = _sequential(
        [None, 4],
        ("Normalization", {"name": "norm_in"}),
        ("Dense", {"name": "hidden", "units": 3, "activation": "relu"}),
        ("Normalization", {"name": "norm_hidden"}),
        ("Dense", {"name": "out", "units": 2}),
    )
    ours = Model.from_config(config, seed=0)
    km = keras.models.model_from_json(keras_json(config))
    km.set_weights(ours.get_weights())
    x = _data(103, 4)

    # Batches of 7 (a partial last one) give the same numbers as Keras's whole-array adapt.
    assert adapt_model(ours, x, batch_size=7) == ["norm_in", "norm_hidden"]
    km.get_layer("norm_in").adapt(x)
    before_hidden = keras.Model(km.inputs, km.get_layer("hidden").output)
    km.get_layer("norm_hidden").adapt(before_hidden.predict(x, verbose=0))
    _assert_same(ours, km, x)
    assert int(normalization_layers(ours)[0].count) == 0  # as Keras: array data leaves count alone


@pytest.mark.parametrize("axis", [-1, None, [1, 2], [2, 1], 1])
def test_axis_variants_on_3d_input(keras: ModuleType, axis: Any) -> None:
    config = _sequential(
        [None, 3, 5],
        ("Normalization", {"name": "norm", "axis": axis}),
        ("Flatten", {"name": "flat"}),
        ("Dense", {"name": "out", "units": 2}),
    )
    ours = Model.from_config(config, seed=1)
    km = keras.models.model_from_json(keras_json(config))
    km.set_weights(ours.get_weights())
    x = _data(41, 3, 5)
    assert adapt_model(ours, x) == ["norm"]
    km.get_layer("norm").adapt(x)
    assert [w.shape for w in ours.get_weights()] == [w.shape for w in km.get_weights()]
    _assert_same(ours, km, x)


def _functional(keras: ModuleType) -> Any:
    a = keras.Input((4,), name="a")
    b = keras.Input((3,), name="b")
    na = keras.layers.Normalization(name="norm_a")(a)
    hb = keras.layers.Dense(5, activation="tanh", name="dense_b")(b)
    nb = keras.layers.Normalization(axis=None, name="norm_b")(hb)
    fixed = keras.layers.Normalization(mean=1.0, variance=4.0, name="fixed")(na)
    joined = keras.layers.Concatenate(name="joined")([fixed, nb])
    return keras.Model({"a": a, "b": b}, keras.layers.Dense(2, name="out")(joined))


def test_functional_with_dict_inputs_matches_keras(keras: ModuleType) -> None:
    km = _functional(keras)
    ours = Model.from_config(json.loads(km.to_json()), seed=2)
    km.set_weights(ours.get_weights())
    xa, xb = _data(57, 4), _data(57, 3)
    # The constant `fixed` layer is skipped: only layers without mean/variance are adapted.
    assert adapt_model(ours, {"b": xb, "a": xa}, batch_size=16) == ["norm_a", "norm_b"]
    km.get_layer("norm_a").adapt(xa)
    km.get_layer("norm_b").adapt(
        keras.Model(km.inputs, km.get_layer("dense_b").output).predict({"a": xa, "b": xb},
                                                                      verbose=0)
    )  # fmt: skip
    _assert_same(ours, km, [xa, xb], {"a": xa, "b": xb})


def test_only_the_named_layers_are_adapted(keras: ModuleType) -> None:
    km = _functional(keras)
    ours = Model.from_config(json.loads(km.to_json()), seed=2)
    xa, xb = _data(20, 4), _data(20, 3)
    assert adapt_model(ours, [xa, xb], layers=["norm_b"]) == ["norm_b"]
    norm_a, norm_b = (layer for layer in normalization_layers(ours) if layer.is_adaptable())
    assert norm_a.is_unadapted() and not norm_b.is_unadapted()


def test_unadapted_rule_and_fit_helper() -> None:
    config = _sequential(
        [None, 2],
        ("Normalization", {"name": "first"}),
        ("Normalization", {"name": "second"}),
        ("Normalization", {"name": "constant", "mean": [0.0, 0.0], "variance": [1.0, 1.0]}),
        ("Dense", {"name": "out", "units": 1}),
    )
    model = Model.from_config(config, seed=0)
    first, second, constant = normalization_layers(model)
    assert first.is_unadapted() and second.is_unadapted() and not constant.is_unadapted()
    # A layer set by hand (or adapted earlier) is no longer at mean 0 / variance 1: kept.
    with torch.no_grad():
        first.mean.copy_(torch.tensor([1.0, 2.0]))
    assert not first.is_unadapted()
    x, y = _data(50, 2), np.zeros((50, 1), np.float32)
    trainer = Trainer(model, CompileSpec.parse({"optimizer": "sgd", "loss": "mse"}),
                      device=torch.device("cpu"))  # fmt: skip
    plan = trainer.plan_fit(x, y, args=FitArgs(batch_size=8, validation_split=0.2))
    assert adapt_before_fit(trainer.model, plan.train, batch_size=8) == ["second"]
    np.testing.assert_array_equal(first.mean.numpy(), [1.0, 2.0])
    # The training part only (Keras's validation_split takes the last 20%), seen through the
    # first layer's fixed mean and variance.
    seen = x[:40] - np.array([1.0, 2.0], np.float32)
    np.testing.assert_array_equal(second.mean.numpy(), np.mean(seen, axis=0))
    np.testing.assert_array_equal(second.variance.numpy(), np.var(seen, axis=0))
    # Everything is adapted now: a second call has nothing to do.
    assert adapt_before_fit(trainer.model, plan.train, batch_size=8) == []
    assert adapt_model(model, x, only_unadapted=True) == []


def test_a_shared_layer_adapts_on_all_its_calls(keras: ModuleType) -> None:
    a = keras.Input((3,), name="a")
    b = keras.Input((3,), name="b")
    shared = keras.layers.Normalization(name="shared")
    km = keras.Model([a, b], keras.layers.Add(name="sum")([shared(a), shared(b)]))
    ours = Model.from_config(json.loads(km.to_json()), seed=0)
    xa, xb = _data(10, 3), _data(10, 3) * 2.0
    assert adapt_model(ours, [xa, xb], batch_size=10) == ["shared"]
    km.get_layer("shared").adapt(np.concatenate([xa, xb]))
    _assert_same(ours, km, [xa, xb])


def test_layer_adapt_keeps_numpy_dtype_rules() -> None:
    layer = Model.from_config(_sequential([None, 3], ("Normalization", {})), seed=0).layer_list()[0]
    assert isinstance(layer, Normalization)
    x64 = RNG.normal(size=(9, 3)) * 1e3
    layer.adapt(x64)  # a float64 array is reduced in float64, then stored as float32 (as Keras)
    np.testing.assert_array_equal(layer.mean.numpy(), np.mean(x64, axis=0).astype(np.float32))
    with pytest.raises(DataError, match="adapts on non-empty data of shape \\[any, 3\\]"):
        layer.adapt(np.zeros((4, 2), np.float32), ("data",))


def _errors_model() -> Model:
    return Model.from_config(_sequential(
        [None, 2],
        ("Normalization", {"name": "norm"}),
        ("Normalization", {"name": "fixed", "mean": 0.0, "variance": 1.0}),
        ("Dense", {"name": "dense", "units": 1}),
    ), seed=0)  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "error", "loc", "text"),
    [
        ({"layers": ["fixed"]}, ConfigError, ("layers", 0), "has mean and variance in its config"),
        ({"layers": ["norm", "nope"]}, ConfigError, ("layers", 1), "no layer named 'nope'"),
        ({"layers": ["dense"]}, ConfigError, ("layers", 0), "is a Dense"),
        ({"layers": ["norm", "norm"]}, ConfigError, ("layers", 1), "listed twice"),
        ({"x": np.zeros((4, 3), np.float32)}, DataError, ("x",), "expected shape [null, 2]"),
        ({"x": {"other": [[1.0, 2.0]]}}, DataError, ("x", "other"), "is not a model input"),
        ({"x": [[1.0, float("nan")]]}, DataError, ("x", 0, 1), "finite"),
        ({"x": np.full((4, 2), 3e38, np.float32)}, DataError, ("x",), "not finite"),
        ({"batch_size": 0}, DataError, ("batch_size",), "must be in"),
    ],
)
def test_errors_name_the_field(
    kwargs: dict[str, Any], error: type[Exception], loc: tuple[Any, ...], text: str
) -> None:
    model = _errors_model()
    before = model.get_weights()
    x = kwargs.pop("x", _data(6, 2))
    with pytest.raises(error) as info:
        adapt_model(model, x, **kwargs)
    assert info.value.loc == loc and text in info.value.message  # type: ignore[attr-defined]
    for got, want in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(got, want)


def test_nothing_to_adapt_and_size_limit() -> None:
    fixed = Model.from_config(
        _sequential([None, 2], ("Normalization", {"name": "c", "mean": 1.0, "variance": 2.0})),
        seed=0,
    )
    with pytest.raises(ConfigError, match="nothing to adapt") as info:
        adapt_model(fixed, _data(3, 2))
    assert info.value.loc == ("layers",)
    assert adapt_model(fixed, _data(3, 2), only_unadapted=True) == []
    wide = Model.from_config(_sequential([None, 1000], ("Normalization", {"name": "n"})), seed=0)
    check_adapt_size(wide, 50_000, ("adapt",))
    with pytest.raises(DataError, match="'n' would be adapted on 50001000 values") as err:
        check_adapt_size(wide, 50_001, ("adapt",))
    assert err.value.loc == ("adapt",)
