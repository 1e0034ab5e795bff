"""Functional models against Keras 3: graphs built with Keras's functional API, saved with its
own `to_json()`, read here; forward passes, our canonical JSON read back by Keras, merge layers,
and multi-output fits (per-output losses, loss_weights and metrics) compared value by value."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from app.engine.config.errors import ConfigError, DataError
from app.engine.models.from_json import Limits
from app.engine.models.model import Model
from app.engine.training.compile import CompileSpec
from app.engine.training.fit_args import FitArgs
from app.engine.training.trainer import Trainer
from tests.support.keras_fit import assert_fit_within_drift, named_results

RNG = np.random.default_rng(7)
MERGE_LAYERS = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate",
                "Dot")  # fmt: skip


def _two_inputs(keras: ModuleType, merge: Callable[[Any, Any], Any]) -> Any:
    a = keras.Input((4,), name="a")
    b = keras.Input((4,), name="b")
    shared = keras.layers.Dense(3, activation="tanh", name="shared")
    merged = merge(shared(a), shared(b))
    return keras.Model([a, b], keras.layers.Dense(2, name="out")(merged))


GRAPHS: dict[str, Callable[[ModuleType], Any]] = {
    "add_shared": lambda k: _two_inputs(k, lambda x, y: k.layers.Add()([x, y])),
    "subtract": lambda k: _two_inputs(k, lambda x, y: k.layers.Subtract()([x, y])),
    "multiply": lambda k: _two_inputs(k, lambda x, y: k.layers.Multiply()([x, y])),
    "average": lambda k: _two_inputs(k, lambda x, y: k.layers.Average()([x, y])),
    "maximum": lambda k: _two_inputs(k, lambda x, y: k.layers.Maximum()([x, y])),
    "minimum": lambda k: _two_inputs(k, lambda x, y: k.layers.Minimum()([x, y])),
    "concatenate": lambda k: _two_inputs(k, lambda x, y: k.layers.Concatenate()([x, y])),
    "dot": lambda k: _two_inputs(k, lambda x, y: k.layers.Dot(axes=1)([x, y])),
    "dot_normalized": lambda k: _two_inputs(
        k, lambda x, y: k.layers.Dot(axes=-1, normalize=True)([x, y])
    ),
}


def _sequence_graphs(k: ModuleType) -> dict[str, Any]:
    seq = k.Input((5, 3), name="seq")
    vec = k.Input((3,), name="vec")
    graphs = {}
    # Dot between a sequence and a vector, and along two different axes.
    graphs["dot_seq_vec"] = k.Model([seq, vec], k.layers.Dot(axes=(2, 1))([seq, vec]))
    other = k.Input((3, 5), name="other")
    graphs["dot_seq_seq"] = k.Model([seq, other], k.layers.Dot(axes=(1, 2))([seq, other]))
    # Broadcasting merge of different ranks, concatenation along a middle axis.
    graphs["add_ranks"] = k.Model([seq, vec], k.layers.Add()([seq, vec]))
    graphs["concat_axis1"] = k.Model(
        [seq, other], k.layers.Concatenate(axis=1)([seq, k.layers.Permute((2, 1))(other)])
    )
    # Three inputs merged, a diamond, two outputs (one reused internally).
    c = k.Input((3,), name="c")
    h = k.layers.Dense(4, activation="relu", name="h")(vec)
    left = k.layers.Dense(4, name="left")(h)
    right = k.layers.Dense(4, activation="sigmoid", name="right")(h)
    joined = k.layers.Maximum(name="joined")([left, right, k.layers.Dense(4)(c)])
    cls = k.layers.Dense(3, activation="softmax", name="cls")(joined)
    reg = k.layers.Dense(1, name="reg")(k.layers.Concatenate()([joined, cls]))
    graphs["diamond_two_outputs"] = k.Model([vec, c], [cls, reg])
    graphs["dict_io"] = k.Model({"vec": vec, "c": c}, {"cls": cls, "reg": reg})
    return graphs


def _all_graphs(keras: ModuleType) -> dict[str, Any]:
    return {**{n: f(keras) for n, f in GRAPHS.items()}, **_sequence_graphs(keras)}


GRAPH_NAMES = [*GRAPHS, "dot_seq_vec", "dot_seq_seq", "add_ranks", "concat_axis1",
               "diamond_two_outputs", "dict_io"]  # fmt: skip


def _inputs(km: Any) -> list[np.ndarray]:
    return [RNG.normal(size=(6, *t.shape[1:])).astype(np.float32) for t in km.inputs]


def _ours(km: Any, config: dict[str, Any] | None = None) -> Model:
    ours = Model.from_config(config or json.loads(km.to_json()), seed=0)
    ours.set_weights(km.get_weights())
    return ours


def _run(model: Model, xs: list[np.ndarray]) -> list[np.ndarray]:
    with torch.no_grad():
        out = model([torch.as_tensor(x) for x in xs] if len(xs) > 1 else torch.as_tensor(xs[0]))
    return [o.numpy() for o in (out if isinstance(out, list) else [out])]


def _keras_out(km: Any, xs: list[np.ndarray]) -> list[np.ndarray]:
    given: Any = xs if len(xs) > 1 else xs[0]
    if isinstance(km.input, dict):  # Keras's order for dicts is sorted keys, as ours
        given = dict(zip(sorted(km.input), xs, strict=True))
    out = km.predict(given, verbose=0)
    if isinstance(out, dict):
        out = [out[name] for name in sorted(km.output)]
    return out if isinstance(out, list) else [out]


@pytest.mark.parametrize("name", GRAPH_NAMES)
def test_forward_matches_keras(keras: ModuleType, name: str) -> None:
    km = _all_graphs(keras)[name]
    ours = _ours(km)
    xs = _inputs(km)
    if isinstance(km.input, dict):
        names = sorted(km.input)
        xs = [RNG.normal(size=(6, *km.input[n].shape[1:])).astype(np.float32) for n in names]
        assert ours.input_names == names and ours.output_names == sorted(km.output)
    for got, want in zip(_run(ours, xs), _keras_out(km, xs), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert ours.summary()["total_params"] == km.count_params()
    # Keras reads our canonical JSON back as the same graph.
    again = keras.models.model_from_json(json.dumps(ours.get_config()))
    again.set_weights(km.get_weights())
    for got, want in zip(_keras_out(again, xs), _keras_out(km, xs), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert Model.from_config(ours.get_config(), seed=0).get_config() == ours.get_config()


def test_every_merge_layer_is_compared() -> None:
    covered = {"Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "Dot"}
    assert covered == set(MERGE_LAYERS)


def _multi_output(keras: ModuleType) -> Any:
    a = keras.Input((4,), name="a")
    b = keras.Input((2,), name="b")
    h = keras.layers.Dense(5, activation="relu", name="h")(keras.layers.Concatenate()([a, b]))
    cls = keras.layers.Dense(3, activation="softmax", name="cls")(h)
    reg = keras.layers.Dense(1, name="reg")(h)
    return keras.Model([a, b], [cls, reg])


N = 70
XA = RNG.normal(size=(N, 4)).astype(np.float32)
XB = RNG.normal(size=(N, 2)).astype(np.float32)
Y_CLS = RNG.integers(0, 3, size=(N,)).astype(np.float32)
Y_REG = RNG.normal(size=(N, 1)).astype(np.float32)
SW = RNG.uniform(0.2, 2.0, size=(N,)).astype(np.float32)

COMPILES: dict[str, dict[str, Any]] = {
    "lists": {"optimizer": "adam", "loss": ["sparse_categorical_crossentropy", "mse"],
              "metrics": [["accuracy"], ["mae", "mse"]]},
    "dicts_weighted": {"optimizer": "sgd",
                       "loss": {"cls": "sparse_categorical_crossentropy", "reg": "huber"},
                       "loss_weights": {"cls": 0.3, "reg": 2.0},
                       "metrics": {"cls": "accuracy"}, "weighted_metrics": {"reg": ["mae"]}},
    "one_loss_for_both": {"optimizer": "rmsprop", "loss": "mse",
                          "metrics": ["mae", None]},
    "loss_for_one_output": {"optimizer": "adam", "loss": [None, "mse"],
                            "metrics": [None, ["mae"]]},
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(COMPILES))
def test_multi_output_fit_matches_keras(keras: ModuleType, name: str) -> None:
    cfg = COMPILES[name]
    km = _multi_output(keras)
    km.compile(optimizer=keras.optimizers.get(cfg["optimizer"]), loss=cfg["loss"],
               loss_weights=cfg.get("loss_weights"), metrics=cfg.get("metrics"),
               weighted_metrics=cfg.get("weighted_metrics"))  # fmt: skip
    trainer = Trainer(_ours(km), CompileSpec.parse(cfg), device=torch.device("cpu"))
    y_cls = Y_CLS if name != "one_loss_for_both" else RNG.normal(size=(N, 3)).astype(np.float32)
    ys = [y_cls, Y_REG]
    sample_weight = SW if name == "dicts_weighted" else None
    initial = km.get_weights()

    def replay(m: Any) -> dict[str, Any]:
        kh = m.fit([XA, XB], ys, batch_size=16, epochs=3, shuffle=False, verbose=0,
                   sample_weight=sample_weight, validation_data=([XA, XB], ys))  # fmt: skip
        theirs = m.evaluate([XA, XB], ys, batch_size=16, return_dict=True, verbose=0)
        preds = m.predict([XA, XB], verbose=0)
        return named_results(kh.history, m.get_weights(),
                             **{f"evaluate {k}": v for k, v in theirs.items()},
                             **{f"predict {i}": p for i, p in enumerate(preds)})  # fmt: skip

    theirs = replay(km)
    history = trainer.fit(
        {"a": XA, "b": XB}, {"cls": y_cls, "reg": Y_REG}, sample_weight=sample_weight,
        args=FitArgs(batch_size=16, epochs=3, shuffle=False), validation_data=([XA, XB], ys),
    )  # fmt: skip
    evaluated = trainer.evaluate([XA, XB], ys, batch_size=16)
    preds = trainer.predict({"a": XA, "b": XB})
    assert isinstance(preds, list)
    ours = named_results(history.history, trainer.model.get_weights(),
                         **{f"evaluate {k}": v for k, v in evaluated.items()},
                         **{f"predict {i}": p for i, p in enumerate(preds)})  # fmt: skip
    # Every value held to a multiple of Keras's own one-ulp drift (CONTRIBUTING.md).
    assert_fit_within_drift(keras, km, ours, theirs, initial=initial, replay=replay)


def _config(keras: ModuleType) -> dict[str, Any]:
    return json.loads(_multi_output(keras).to_json())


def _layer(config: dict[str, Any], name: str) -> dict[str, Any]:
    return next(e for e in config["config"]["layers"] if e["name"] == name)


def _mutations() -> list[tuple[Callable[[dict[str, Any]], None], str]]:
    def cycle(c: dict[str, Any]) -> None:  # h reads cls, which reads h
        _layer(c, "h")["inbound_nodes"][0]["args"][0]["config"]["keras_history"] = ["cls", 0, 0]

    def missing(c: dict[str, Any]) -> None:
        _layer(c, "reg")["inbound_nodes"][0]["args"][0]["config"]["keras_history"] = ["nope", 0, 0]

    def kwarg(c: dict[str, Any]) -> None:
        _layer(c, "reg")["inbound_nodes"][0]["kwargs"] = {"scale": 2.0}

    def training_not_bool(c: dict[str, Any]) -> None:
        _layer(c, "reg")["inbound_nodes"][0]["kwargs"] = {"training": "yes"}

    def unlisted_input(c: dict[str, Any]) -> None:
        c["config"]["input_layers"] = [["a", 0, 0]]

    def second_output(c: dict[str, Any]) -> None:
        c["config"]["output_layers"] = [["cls", 0, 1]]

    def never_called(c: dict[str, Any]) -> None:
        _layer(c, "reg")["inbound_nodes"] = []

    def same_output_twice(c: dict[str, Any]) -> None:
        c["config"]["output_layers"] = [["cls", 0, 0], ["cls", 0, 0]]

    def lambda_layer(c: dict[str, Any]) -> None:
        _layer(c, "reg")["class_name"] = "Lambda"

    return [(cycle, "cycle"), (missing, "no layer produces"), (kwarg, "no call argument 'scale'"),
            (training_not_bool, "true, false or null"),
            (unlisted_input, "not in input_layers"), (second_output, "first output"),
            (never_called, "never called"), (same_output_twice, "must differ"),
            (lambda_layer, "Python code")]  # fmt: skip


@pytest.mark.parametrize(("mutate", "text"), _mutations())
def test_bad_graphs_are_config_errors(keras: ModuleType, mutate: Any, text: str) -> None:
    config = _config(keras)
    mutate(config)
    with pytest.raises(ConfigError, match=text):
        Model.from_config(config, seed=0)


def test_multi_io_data_errors_name_the_input_or_output(keras: ModuleType) -> None:
    trainer = Trainer(Model.from_config(_config(keras), seed=0),
                      CompileSpec.parse({"loss": ["sparse_categorical_crossentropy", "mse"]}),
                      device=torch.device("cpu"))  # fmt: skip
    with pytest.raises(DataError) as info:
        trainer.evaluate({"a": XA, "b": XB[:, :1]}, [Y_CLS, Y_REG])
    assert info.value.loc == ("x", "b")
    with pytest.raises(DataError) as info:
        trainer.evaluate({"a": XA, "z": XB}, [Y_CLS, Y_REG])
    assert info.value.loc == ("x", "z")
    with pytest.raises(DataError) as info:
        trainer.evaluate([XA, XB], {"cls": Y_CLS, "reg": Y_REG[:5]})
    assert info.value.loc == ("y", "reg")
    with pytest.raises(DataError, match="2 inputs"):
        trainer.evaluate(XA, [Y_CLS, Y_REG])
    with pytest.raises(DataError) as info:
        trainer.evaluate([XA, XB], {"cls": Y_CLS + 5, "reg": Y_REG})
    assert info.value.loc[:2] == ("y", "cls")


@pytest.mark.parametrize(
    ("compile_cfg", "loc"),
    [
        ({"loss": ["mse"]}, ("compile", "loss")),
        ({"loss": {"cls": "mse", "zzz": "mse"}}, ("compile", "loss", "zzz")),
        ({"loss": "mse", "metrics": ["mae"]}, ("compile", "metrics")),
        ({"loss": "mse", "loss_weights": [1.0, float("nan")]}, ("compile", "loss_weights", 1)),
        ({"loss": [None, None]}, ("compile", "loss")),
        ({"loss": "mse", "loss_weights": [1.0, 0.5]}, ("compile", "loss_weights")),
    ],
)
def test_compile_errors_against_the_outputs(keras: ModuleType, compile_cfg: Any, loc: Any) -> None:
    model = Model.from_config(_config(keras), seed=0)
    with pytest.raises(ConfigError) as info:
        trainer = Trainer(model, CompileSpec.parse(compile_cfg), device=torch.device("cpu"))
        trainer.evaluate([XA, XB], [Y_CLS, Y_REG])
    assert info.value.loc == loc


def _two_regressors(keras: ModuleType, as_dict: bool) -> Any:
    a = keras.Input((4,), name="x")
    z = keras.layers.Dense(2, name="z")(a)
    b = keras.layers.Dense(1, name="a")(a)
    return keras.Model(a, {"z": z, "a": b} if as_dict else [z, b])


@pytest.mark.parametrize(
    ("as_dict", "cfg"),
    [
        (True, {"loss": ["mse", "mae"], "loss_weights": [1.0, 10.0],
                "metrics": [["mae"], ["mse"]]}),
        (False, {"loss": "mse", "loss_weights": {"z": 2.0}}),
        (False, {"loss": "mse", "loss_weights": [2.0]}),
        (False, {"loss": ["mse", "mae"], "loss_weights": {"z": 10.0, "a": 1.0}}),
        (False, {"loss": {"z": "mse", "a": "mae"}, "loss_weights": [3.0, 0.5]}),
    ],
)  # fmt: skip
def test_loss_structures_follow_keras(keras: ModuleType, as_dict: bool, cfg: Any) -> None:
    """Dict outputs are in sorted key order; loss_weights of another structure are flattened
    (sorted keys) and taken in output order, a single loss takes its one weight everywhere."""
    km = _two_regressors(keras, as_dict)
    km.compile(optimizer="sgd", **cfg)
    ours = _ours(km)
    x = RNG.normal(size=(20, 4)).astype(np.float32)
    ys = {"z": RNG.normal(size=(20, 2)).astype(np.float32),
          "a": RNG.normal(size=(20, 1)).astype(np.float32)}  # fmt: skip
    y_list = [ys[n] for n in ours.output_names]
    theirs = km.evaluate(x, y_list, return_dict=True, verbose=0)
    got = Trainer(ours, CompileSpec.parse(cfg), device=torch.device("cpu")).evaluate(x, y_list)
    assert sorted(got) == sorted(theirs)
    for key, value in theirs.items():
        np.testing.assert_allclose(got[key], value, rtol=1e-6, err_msg=key)


@pytest.mark.parametrize(
    ("mutate", "loc"),
    [
        (lambda c: c["config"]["layers"][2].update(config=[1]), ("config", "layers", 2, "config")),
        (lambda c: c["config"]["layers"][0].update(config="x"), ("config", "layers", 0, "config")),
        (lambda c: c["config"]["layers"][2].update(class_name=["Dense"]),
         ("config", "layers", 2, "class_name")),
        (lambda c: c.update(class_name=["Functional"], registered_name=None), ("class_name",)),
    ],
)  # fmt: skip
def test_malformed_entries_are_config_errors(keras: ModuleType, mutate: Any, loc: Any) -> None:
    config = _config(keras)
    mutate(config)
    with pytest.raises(ConfigError) as info:
        Model.from_config(config, seed=0)
    assert info.value.loc[: len(loc)] == loc


def test_an_overflowing_loss_weight_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        CompileSpec.parse({"loss": ["mse", "mse"], "loss_weights": [10**400, 1]})
    assert info.value.loc == ("compile", "loss_weights", 0)


@pytest.mark.parametrize("name", ["diamond_two_outputs", "add_shared", "concat_axis1"])
def test_layers_take_keras_order_whatever_the_config_order(keras: ModuleType, name: str) -> None:
    """Keras lists a Functional model's layers by graph depth (its map_graph), not in config
    order; weights, get_weights() and .keras groups follow that order."""
    config = json.loads(_all_graphs(keras)[name].to_json())
    entries = config["config"]["layers"]
    inputs = [e for e in entries if e["class_name"] == "InputLayer"]
    others = [e for e in entries if e["class_name"] != "InputLayer"]
    config["config"]["layers"] = [*inputs, *reversed(others)]
    km = keras.models.model_from_json(json.dumps(config))
    ours = Model.from_config(config, seed=0)
    assert [layer.name for layer in ours.layer_list()] == [
        layer.name for layer in km.layers if layer.__class__.__name__ != "InputLayer"
    ]
    assert [w.shape for w in ours.get_weights()] == [w.shape for w in km.get_weights()]


def test_sample_weights_per_output_and_per_step(keras: ModuleType) -> None:
    km = _two_regressors(keras, False)
    km.compile(optimizer="sgd", loss=["mse", "mae"], weighted_metrics=[["mae"], ["mse"]])
    ours = _ours(km)
    trainer = Trainer(ours, CompileSpec.parse({"loss": ["mse", "mae"],
                                               "weighted_metrics": [["mae"], ["mse"]]}),
                      device=torch.device("cpu"))  # fmt: skip
    x = RNG.normal(size=(12, 4)).astype(np.float32)
    ys = [RNG.normal(size=(12, 2)).astype(np.float32), RNG.normal(size=(12, 1)).astype(np.float32)]
    sws = [RNG.uniform(0.1, 2, 12).astype(np.float32), RNG.uniform(0.1, 2, 12).astype(np.float32)]
    theirs = km.evaluate(x, ys, sample_weight=sws, return_dict=True, verbose=0)
    got = trainer.evaluate(x, ys, sample_weight=[w.tolist() for w in sws])  # a list: per output
    for key, value in theirs.items():
        np.testing.assert_allclose(got[key], value, rtol=1e-6, err_msg=key)
    with pytest.raises(DataError, match="fewer axes than the output") as info:
        trainer.evaluate(x, ys, sample_weight={"z": np.ones((12, 2), np.float32)})
    assert info.value.loc == ("sample_weight", "z")


def test_nested_tensors_count_toward_the_size_limit() -> None:
    inner = {"class_name": "Sequential", "config": {"layers": [
        {"class_name": "InputLayer", "config": {"batch_shape": [None, 8]}},
        {"class_name": "RepeatVector", "config": {"n": 1000}},
        {"class_name": "GlobalAveragePooling1D", "config": {}},
    ]}}  # fmt: skip
    outer = {"class_name": "Sequential", "config": {"layers": [
        {"class_name": "InputLayer", "config": {"batch_shape": [None, 8]}}, inner,
    ]}}  # fmt: skip
    with pytest.raises(ConfigError, match="8000 elements per sample; the limit is 4000"):
        Model.from_config(outer, seed=0, limits=Limits(tensor_elements=4000))
