"""Models from Keras JSON: layers against Keras's own forward pass, summaries, weights, config
round trips, and errors that name the field."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from app.engine.config.errors import ConfigError, DataError
from app.engine.layers import LAYERS
from app.engine.models.model import Model
from tests.engine.test_attention_layers import COVERED as ATTENTION_LAYERS
from tests.engine.test_functional import MERGE_LAYERS
from tests.support import scenario
from tests.support.keras_json import keras_json
from tests.support.layer_cases import all_cases
from tests.support.tolerance import Tolerance, assert_close, eps_bound


def _forward_tolerance(weights: list[np.ndarray], x: np.ndarray, n_layers: int) -> Tolerance:
    """One forward pass's eps bound (CONTRIBUTING.md, tolerance policy): the reductions on a
    value's path, each weight's fan-in (every axis of a kernel but its last: inputs x kernel
    size for a convolution, units for a recurrent kernel), taken once per step of a sequence
    input (a recurrent state carries its roundings from step to step), and 10 elementwise
    operations per layer, on quantities of the magnitude of the inputs times the weights."""
    fan_ins = sum(int(np.prod(w.shape[:-1])) for w in weights if w.ndim >= 2)
    steps = x.shape[1] if x.ndim >= 3 else 1
    n_ops = fan_ins * steps + 10 * n_layers
    # A product's terms are at most the largest input times the largest weight (outputs of
    # the layers in between are squashed or of the same order).
    largest_w = max([1.0] + [float(np.abs(w).max()) for w in weights if w.size])
    scale = max(1.0, float(np.abs(x).max())) * largest_w
    return Tolerance(eps_bound(n_ops, scale), 0.0,
                     f"{n_ops} roundings (fan-ins {fan_ins} x {steps} steps + 10 per layer) "
                     f"on magnitudes up to {scale:.3g}")  # fmt: skip


def _model(layers: list[tuple[str, dict[str, Any]]], shape: list[Any]) -> dict[str, Any]:
    entries = [{"class_name": "InputLayer", "config": {"batch_shape": shape}}]
    entries += [{"class_name": c, "config": k} for c, k in layers]
    return {"class_name": "Sequential", "config": {"layers": entries}}


LAYER_CASES = all_cases()


@pytest.mark.parametrize("case", sorted(LAYER_CASES))
def test_forward_matches_keras(keras: ModuleType, case: str) -> None:
    layers, shape, *inputs = LAYER_CASES[case]  # an optional third element: "int:N" inputs
    config = _model(layers, shape)
    keras.utils.set_random_seed(0)  # the same initial weights whatever ran before
    km = keras.models.model_from_json(keras_json(config))
    ours = Model.from_config(config, seed=0)
    ours.set_weights(km.get_weights())
    rng = np.random.default_rng(1)
    if inputs and inputs[0].startswith("int:"):  # integer ids in [0, N), as float32
        x = rng.integers(0, int(inputs[0][4:]), size=(6, *shape[1:])).astype(np.float32)
    else:
        x = rng.normal(size=(6, *shape[1:])).astype(np.float32)
    with torch.no_grad():
        got = ours(torch.as_tensor(x)).numpy()
    tol = _forward_tolerance(km.get_weights(), x, len(layers))
    assert_close(got, km.predict(x, verbose=0), tol, what=case)
    assert ours.summary()["total_params"] == km.count_params()
    # What Keras's own to_json() writes for the same model is accepted too.
    again = Model.from_config(json.loads(km.to_json()), seed=0)

    def shapes(m: Model) -> list[tuple[str, list[Any], int]]:  # names follow Keras's counter
        return [(r["class_name"], r["output_shape"], r["params"]) for r in m.summary()["layers"]]

    assert shapes(again) == shapes(ours)
    assert [w.shape for w in ours.get_weights()] == [w.shape for w in km.get_weights()]
    # Our canonical config is one Keras reads back as the same model.
    back = keras.models.model_from_json(json.dumps(ours.get_config()))
    back.set_weights(km.get_weights())
    assert_close(back.predict(x, verbose=0), got, tol, what=f"{case}, read back by Keras")


def test_every_registered_layer_has_a_keras_comparison() -> None:
    covered = {case[0][0][0] for case in LAYER_CASES.values()}
    covered |= set(MERGE_LAYERS)  # compared inside Functional graphs (test_functional.py)
    covered |= set(ATTENTION_LAYERS)  # compared layer by layer (test_attention_layers.py)
    covered |= {"Sequential", "Functional"}  # models as layers (test_nested.py)
    assert set(LAYERS.names()) <= covered


def test_keras_loads_our_canonical_config(keras: ModuleType) -> None:
    ours = Model.from_config(scenario.MODEL, seed=4)
    km = keras.models.model_from_json(json.dumps(ours.get_config()))
    km.set_weights(ours.get_weights())
    np.testing.assert_allclose(
        km.predict(scenario.X, verbose=0),
        ours(torch.as_tensor(scenario.X)).detach().numpy(),
        rtol=1e-6,
    )
    again = Model.from_config(ours.get_config(), seed=4)
    assert again.get_config() == ours.get_config()


def test_summary_matches_keras_counts(keras: ModuleType) -> None:
    # Keras's automatic layer names count per session; free_memory=False skips Keras's gc.collect().
    keras.backend.clear_session(free_memory=False)
    km = keras.models.model_from_json(keras_json(scenario.MODEL))
    summary = Model.from_config(scenario.MODEL, seed=0).summary()
    assert summary["total_params"] == km.count_params() == 7
    assert summary["trainable_params"] == 4
    assert [layer["name"] for layer in summary["layers"]] == [layer.name for layer in km.layers]


def test_seeded_initial_weights_are_reproducible() -> None:
    a = Model.from_config(scenario.MODEL, seed=9).get_weights()
    b = Model.from_config(scenario.MODEL, seed=9).get_weights()
    c = Model.from_config(scenario.MODEL, seed=10).get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_glorot_uniform_limits() -> None:
    config = _model([("Dense", {"units": 300})], [None, 200])
    kernel = Model.from_config(config, seed=0).get_weights()[0]
    limit = np.sqrt(6 / 500)
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.95 * limit


@pytest.mark.parametrize(
    ("mutate", "loc", "text"),
    [
        (lambda c: c["config"]["layers"][1].update(class_name="Conv9D"),
         ("config", "layers", 1, "class_name"), "unknown layer"),
        (lambda c: c["config"]["layers"][2]["config"].update(units=0),
         ("config", "layers", 2, "config", "units"), ">= 1"),
        (lambda c: c["config"]["layers"][2]["config"].update(activation="relux"),
         ("config", "layers", 2, "config", "activation"), "unknown activation"),
        (lambda c: c["config"]["layers"][2]["config"].update(kernel_regularizer="l3"),
         ("config", "layers", 2, "config", "kernel_regularizer"), "unknown regularizer"),
        (lambda c: c["config"]["layers"][2]["config"].update(bogus=1),
         ("config", "layers", 2, "config", "bogus"), "unknown argument"),
        (lambda c: c["config"]["layers"][2].update(module="my.module"),
         ("config", "layers", 2, "module"), "only Keras"),
        (lambda c: c["config"]["layers"].pop(0), ("config", "layers"), "input shape"),
        (lambda c: c.update(class_name="MyModel"), ("class_name",), "Sequential"),
        (lambda c: c["config"]["layers"][3]["config"].update(name="dense_x"), None, None),
    ],
)  # fmt: skip
def test_config_errors_name_the_field(mutate: Any, loc: Any, text: Any) -> None:
    config = json.loads(json.dumps(scenario.MODEL))
    mutate(config)
    if loc is None:
        Model.from_config(config, seed=0)
        return
    with pytest.raises(ConfigError) as info:
        Model.from_config(config, seed=0)
    assert info.value.loc == loc
    assert text in info.value.message


@pytest.mark.parametrize(
    ("layer", "shape", "key"),
    [
        (("Dense", {"units": 2, "bias_initializer": "orthogonal"}), [None, 3], "bias_initializer"),
        (("Conv1D", {"filters": 2, "kernel_size": 2, "bias_initializer": "orthogonal"}),
         [None, 5, 3], "bias_initializer"),
        (("DepthwiseConv1D", {"kernel_size": 2, "bias_initializer": "orthogonal"}),
         [None, 5, 3], "bias_initializer"),
        (("EinsumDense", {"equation": "ab,bc->ac", "output_shape": 2, "bias_axes": "c",
                          "bias_initializer": "orthogonal"}), [None, 3], "bias_initializer"),
        (("PReLU", {"alpha_initializer": "orthogonal"}), [None, 3], "alpha_initializer"),
        (("LSTM", {"units": 2, "bias_initializer": "orthogonal"}), [None, 4, 3],
         "bias_initializer"),
    ],
)  # fmt: skip
def test_an_initializer_a_weight_cannot_take_is_an_error_at_its_key(
    layer: tuple[str, dict[str, Any]], shape: list[Any], key: str
) -> None:
    with pytest.raises(ConfigError) as info:
        Model.from_config(_model([layer], shape), seed=0)
    assert info.value.loc == ("config", "layers", 1, "config", key)
    assert "rank 2 or more" in info.value.message


def test_duplicate_layer_names_are_refused() -> None:
    config = json.loads(json.dumps(scenario.MODEL))
    config["config"]["layers"][3]["config"]["name"] = "dense"
    config["config"]["layers"][2]["config"]["name"] = "dense"
    with pytest.raises(ConfigError, match="used twice"):
        Model.from_config(config, seed=0)


def test_set_weights_checks_everything_before_changing_anything() -> None:
    model = Model.from_config(scenario.MODEL, seed=0)
    before = model.get_weights()
    bad = [np.ones_like(w) for w in before]
    bad[-1] = np.ones((2,), dtype=np.float32)
    with pytest.raises(DataError, match="expected shape"):
        model.set_weights(bad)
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))
