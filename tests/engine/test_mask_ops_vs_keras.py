"""Functional models whose masks Keras writes as op nodes, against Keras 3 (torch backend): the
model from Keras's own `to_json()`, Keras's weights copied over, the same padded data in both.

Keras records `Embedding(mask_zero=True)`'s mask as a `NotEqual(ids, 0)` node, `Masking`'s as
`Any(NotEqual(x, mask_value), axis=-1)`, a merge layer's as `LogicalOr` (Concatenate's through
`ExpandDims`, `ZerosLike`, `OnesLike`, the op `Concatenate` and `Any`), and passes it as the
`mask` argument of every later call whose layer takes one. The text model (ids -> Embedding ->
LSTM -> Dense) and its variants (GRU, Bidirectional, a returned sequence into
GlobalAveragePooling1D, Masking, Add, Concatenate) match Keras through predict, evaluate and
fit; a `mask` a user passed replaces the propagated one, for the layer and for the loss, and
may be a bool input; a nested model reads the mask it is called with; the op nodes round-trip
(Keras reads the export); ops Keras does not write for masks, foreign modules and misplaced
masks are refused naming the node.

Measured: predict, evaluate and every History value bit-identical in each case here; final
weights within 6.0e-8 absolute. Asserted bit for bit for the text model's predict and evaluate,
elsewhere at rtol 1e-6 (outputs, losses, metrics); the fits to a multiple of Keras's own
one-ulp drift (CONTRIBUTING.md)."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from app.engine.config.errors import ConfigError
from app.engine.models.model import Model
from app.engine.training.compile import CompileSpec
from app.engine.training.fit_args import FitArgs
from app.engine.training.trainer import Trainer
from tests.support.keras_fit import fit_results
from tests.support.tolerance import assert_within_drift, keras_drift

RTOL, ATOL = 1e-6, 1e-7  # layer outputs, losses and metrics
RNG = np.random.default_rng(11)
N, T, VOCAB = 48, 7, 20
IDS = RNG.integers(1, VOCAB, size=(N, T)).astype(np.int32)
for _i, _n in enumerate(RNG.integers(1, T + 1, size=N)):
    if _i % 4 == 3:
        IDS[_i, : T - _n] = 0  # left-padded
    else:
        IDS[_i, _n:] = 0  # right-padded
Y = RNG.integers(0, 2, size=(N, 1)).astype(np.float32)
FEATURES = RNG.normal(size=(N, T, 3)).astype(np.float32)
FEATURES[IDS == 0] = 0.0  # the padded steps of the float input, for Masking
COMPILE = {"optimizer": {"class_name": "Adam", "config": {"learning_rate": 0.01}},
           "loss": "binary_crossentropy", "metrics": ["accuracy"]}  # fmt: skip


def _text_model(keras: ModuleType) -> Any:
    """The standard Keras text model, written with the Functional API."""
    layers = keras.layers
    keras.utils.set_random_seed(3)
    i = keras.Input(shape=(T,), dtype="int32")
    e = layers.Embedding(VOCAB, 8, mask_zero=True)(i)
    h = layers.LSTM(6)(e)
    o = layers.Dense(1, activation="sigmoid")(h)
    return keras.Model(i, o)


def _ids_into(head: Callable[[Any, Any], Any]) -> Callable[[ModuleType], Any]:
    def build(keras: ModuleType) -> Any:
        keras.utils.set_random_seed(4)
        i = keras.Input(shape=(T,), dtype="int32", name="ids")
        e = keras.layers.Embedding(VOCAB, 5, mask_zero=True, name="emb")(i)
        return keras.Model(i, keras.layers.Dense(1, activation="sigmoid")(head(keras.layers, e)))

    return build


def _masking(keras: ModuleType) -> Any:
    keras.utils.set_random_seed(5)
    i = keras.Input(shape=(T, 3), name="features")
    h = keras.layers.GRU(4)(keras.layers.Masking(0.0)(i))
    return keras.Model(i, keras.layers.Dense(1, activation="sigmoid")(h))


def _concatenated(layers: Any, e: Any) -> Any:
    """A masked and an unmasked sequence joined: Keras widens and joins the masks."""
    plain = layers.Dense(3)(layers.Dropout(0.0)(e))  # Dropout drops no mask; Dense keeps none
    joined = layers.Concatenate()([e, layers.Conv1D(3, 1)(plain)])  # Conv1D drops the mask
    seq = layers.Bidirectional(layers.GRU(3, return_sequences=True))(joined)
    return layers.GlobalAveragePooling1D()(seq)


VARIANTS: dict[str, tuple[Callable[[ModuleType], Any], np.ndarray, set[str]]] = {
    "gru": (_ids_into(lambda ly, e: ly.GRU(4)(e)), IDS, {"NotEqual"}),
    "bidirectional_lstm": (_ids_into(lambda ly, e: ly.Bidirectional(ly.LSTM(3))(e)), IDS,
                           {"NotEqual"}),
    "sequence_into_pooling": (
        _ids_into(lambda ly, e: ly.GlobalAveragePooling1D()(ly.LSTM(4, return_sequences=True)(e))),
        IDS, {"NotEqual"}),
    "masking_layer": (_masking, FEATURES, {"NotEqual", "Any"}),
    "add": (_ids_into(lambda ly, e: ly.SimpleRNN(4)(ly.Add()([e, ly.Dense(5)(e)]))), IDS,
            {"NotEqual", "LogicalOr"}),
    "concatenate": (_ids_into(_concatenated), IDS,
                    {"NotEqual", "ExpandDims", "ZerosLike", "LogicalOr", "OnesLike",
                     "Concatenate", "Any"}),
}  # fmt: skip


def _ops(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The op entries of a model JSON, by name."""
    return {
        e["name"]: e for e in config["config"]["layers"] if e["module"] == "keras.src.ops.numpy"
    }


def _ours(km: Any, compile_cfg: dict[str, Any] = COMPILE) -> Trainer:
    model = Model.from_config(json.loads(km.to_json()), seed=0)
    model.set_weights(km.get_weights())
    return Trainer(model, CompileSpec.parse(compile_cfg), device=torch.device("cpu"))


def _compile(keras: ModuleType, km: Any, loss: str = "binary_crossentropy") -> None:
    metrics = ["accuracy"] if loss == "binary_crossentropy" else []
    km.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss=loss, metrics=metrics)


def _same(ours: Any, theirs: Any, rtol: float = RTOL, atol: float = ATOL) -> None:
    np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=rtol, atol=atol)


def _same_fit(keras: ModuleType, trainer: Trainer, km: Any, x: np.ndarray, y: np.ndarray) -> None:
    """Three epochs of batches of 8 in order: every History value and the final weights, each to
    a multiple of Keras's own drift from initial weights moved by one ulp (CONTRIBUTING.md)."""
    initial, compiled = km.get_weights(), km.get_compile_config()

    def fit(m: Any) -> dict[str, Any]:
        return fit_results(m.fit(x, y, batch_size=8, epochs=3, shuffle=False, verbose=0).history, m)

    def again(weights: list[np.ndarray]) -> dict[str, Any]:
        other = keras.models.clone_model(km)  # the same graph, new variables
        other.compile_from_config(compiled)
        other.set_weights(weights)
        return fit(other)

    theirs = fit(km)
    history = trainer.fit(x, y, args=FitArgs(batch_size=8, epochs=3, shuffle=False)).history
    ours = {**{f"history {k}": v for k, v in history.items()},
            **{f"weight {i}": w for i, w in enumerate(trainer.model.get_weights())}}  # fmt: skip
    drift = keras_drift(again, initial, baseline=theirs)
    assert isinstance(drift, dict)
    assert_within_drift(ours, theirs, drift)


@pytest.mark.fit  # a differential fit: run again on the baseline kernels
def test_the_functional_text_model_matches_keras(keras: ModuleType) -> None:
    km = _text_model(keras)
    spec = json.loads(km.to_json())
    (op,) = _ops(spec).values()  # what the engine used to refuse is in Keras's JSON
    assert (op["class_name"], op["inbound_nodes"][0]["args"][1]) == ("NotEqual", 0)
    lstm = next(e for e in spec["config"]["layers"] if e["class_name"] == "LSTM")
    assert lstm["inbound_nodes"][0]["kwargs"]["mask"]["config"]["keras_history"][0] == op["name"]
    _compile(keras, km)
    trainer = _ours(km)
    assert np.array_equal(trainer.predict(IDS, batch_size=16),
                          km.predict(IDS, batch_size=16, verbose=0))  # fmt: skip
    theirs = km.evaluate(IDS, Y, batch_size=10, return_dict=True, verbose=0)
    assert trainer.evaluate(IDS.tolist(), Y, batch_size=10) == theirs
    _same_fit(keras, trainer, km, IDS, Y)


@pytest.mark.fit  # a differential fit: run again on the baseline kernels
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_each_masked_variant_matches_keras(keras: ModuleType, variant: str) -> None:
    build, x, ops = VARIANTS[variant]
    km = build(keras)
    assert {e["class_name"] for e in _ops(json.loads(km.to_json())).values()} == ops
    _compile(keras, km)
    trainer = _ours(km)
    _same(trainer.predict(x, batch_size=16), km.predict(x, batch_size=16, verbose=0))
    theirs = km.evaluate(x, Y, batch_size=10, return_dict=True, verbose=0)
    ours = trainer.evaluate(x, Y, batch_size=10)
    for key, value in theirs.items():
        _same(ours[key], value)
    _same_fit(keras, trainer, km, x, Y)


@pytest.mark.fit  # a differential fit: run again on the baseline kernels
def test_a_mask_given_to_a_call_replaces_the_propagated_one(keras: ModuleType) -> None:
    """`LSTM(...)(e, mask=ops.not_equal(ids, 2))` after `Embedding(mask_zero=True)`: Keras uses
    the given mask for the LSTM and for what it returns, so a sequence output's loss counts the
    steps whose id is not 2 (padding zeros included)."""
    layers = keras.layers
    keras.utils.set_random_seed(6)
    i = keras.Input(shape=(T,), dtype="int32")
    e = layers.Embedding(VOCAB, 5, mask_zero=True)(i)
    h = layers.LSTM(3, return_sequences=True)(e, mask=keras.ops.not_equal(i, 2))
    km = keras.Model(i, layers.Dense(2)(h))  # Dense passes the LSTM's mask to the loss
    ids = IDS.copy()
    ids[::3, 1] = 2
    y = RNG.normal(size=(N, T, 2)).astype(np.float32)
    _compile(keras, km, "mse")
    trainer = _ours(km, {**COMPILE, "loss": "mse", "metrics": []})
    _, mask = trainer.model.forward_with_mask(torch.from_numpy(ids))
    assert torch.equal(mask, torch.from_numpy(ids != 2))
    _same(trainer.predict(ids), km.predict(ids, verbose=0))
    _same(trainer.evaluate(ids, y)["loss"], km.evaluate(ids, y, verbose=0))
    _same_fit(keras, trainer, km, ids, y)


def test_a_bool_input_can_be_the_mask(keras: ModuleType) -> None:
    """`GRU(...)(x, mask=m)` with `m` a bool Input: the mask comes with the data."""
    keras.utils.set_random_seed(8)
    x = keras.Input((T, 3), name="x")
    m = keras.Input((T,), dtype="bool", name="m")
    km = keras.Model([x, m], keras.layers.GRU(4)(x, mask=m))
    model = Model.from_config(json.loads(km.to_json()), seed=0)
    model.set_weights(km.get_weights())
    steps = IDS != 0
    got = model([torch.from_numpy(FEATURES), torch.from_numpy(steps)]).detach().numpy()
    assert np.array_equal(got, km.predict([FEATURES, steps], verbose=0))
    assert model.input_dtypes == [torch.float32, torch.bool]


def test_the_op_nodes_round_trip(keras: ModuleType) -> None:
    """Our JSON writes each op entry as Keras does, in Keras's order; Keras reads it back and
    predicts the same; the ops stay out of the summary, the weights and the `.keras` groups."""
    build, x, _ = VARIANTS["concatenate"]
    km = build(keras)
    spec = json.loads(km.to_json())
    model = Model.from_config(spec, seed=0)
    model.set_weights(km.get_weights())
    config = model.get_config()
    assert _ops(config) == _ops(spec)
    assert [e["name"] for e in config["config"]["layers"]] == [
        e["name"] for e in spec["config"]["layers"]
    ]
    again = keras.models.model_from_json(json.dumps(config))
    again.set_weights(km.get_weights())
    _same(again.predict(x, verbose=0), km.predict(x, verbose=0))
    ours_again = Model.from_config(config, seed=0)
    ours_again.set_weights(model.get_weights())
    assert torch.equal(ours_again(torch.from_numpy(x)), model(torch.from_numpy(x)))
    summary = Model.dry_run(spec).summary()
    assert [row["name"] for row in summary["layers"]] == [layer.name for layer in km.layers[1:]]
    assert summary["total_params"] == km.count_params()
    assert len(model.h5_paths()) == len(km.weights)


def test_a_hand_written_op_needs_no_module(keras: ModuleType) -> None:
    """Without `module` fields, NotEqual is the op (no layer has its name), Concatenate the
    layer."""
    km = _text_model(keras)
    spec = json.loads(km.to_json())
    for entry in spec["config"]["layers"]:
        for key in ("module", "registered_name", "build_config"):
            entry.pop(key, None)
    model = Model.from_config(spec, seed=0)
    model.set_weights(km.get_weights())
    assert np.array_equal(model(torch.from_numpy(IDS)).detach().numpy(),
                          km.predict(IDS, verbose=0))  # fmt: skip


@pytest.mark.parametrize("outer", ["sequential", "functional"])
def test_a_nested_model_reads_the_mask_it_is_called_with(keras: ModuleType, outer: str) -> None:
    """Keras's nested model attaches its caller's mask to its inputs (a Functional caller
    passes it as the call's `mask` argument): its LSTM skips the padding, and the sequence it
    returns keeps the mask, which the loss applies."""
    layers = keras.layers
    keras.utils.set_random_seed(7)
    inner = keras.Sequential([keras.Input((T, 4)), layers.LSTM(3, return_sequences=True)])
    if outer == "sequential":
        km = keras.Sequential([keras.Input((T,), dtype="int32"),
                               layers.Embedding(VOCAB, 4, mask_zero=True), inner])  # fmt: skip
    else:
        i = keras.Input((T,), dtype="int32")
        km = keras.Model(i, inner(layers.Embedding(VOCAB, 4, mask_zero=True)(i)))
    _compile(keras, km, "mse")
    trainer = _ours(km, {**COMPILE, "loss": "mse", "metrics": []})
    y = RNG.normal(size=(N, T, 3)).astype(np.float32)
    assert np.array_equal(trainer.predict(IDS), km.predict(IDS, verbose=0))
    assert trainer.evaluate(IDS, y)["loss"] == km.evaluate(IDS, y, verbose=0)


def _entry(config: dict[str, Any], class_name: str) -> dict[str, Any]:
    return next(e for e in config["config"]["layers"] if e["class_name"] == class_name)


def _op(config: dict[str, Any], class_name: str, args: list[Any], **op_config: Any) -> None:
    """Replace the NotEqual entry with another op reading the same tensors."""
    entry = _entry(config, "NotEqual")
    entry.update(class_name=class_name, registered_name=class_name)
    entry["config"].update(op_config)
    entry["inbound_nodes"][0]["args"] = args


def _first_arg(config: dict[str, Any], class_name: str) -> dict[str, Any]:
    return dict(_entry(config, class_name)["inbound_nodes"][0]["args"][0])


def _lstm_mask(config: dict[str, Any]) -> dict[str, Any]:
    return dict(_entry(config, "LSTM")["inbound_nodes"][0]["kwargs"]["mask"])


def _refused(config: dict[str, Any]) -> Callable[[Callable[[dict[str, Any]], Any]], ConfigError]:
    def run(change: Callable[[dict[str, Any]], Any]) -> ConfigError:
        bad = copy.deepcopy(config)
        change(bad)
        with pytest.raises(ConfigError) as info:
            Model.dry_run(bad)
        return info.value

    return run


def test_ops_and_masks_keras_does_not_write_are_refused(keras: ModuleType) -> None:
    spec = json.loads(_text_model(keras).to_json())
    refused = _refused(spec)
    names = [e["name"] for e in spec["config"]["layers"]]
    at = {e["class_name"]: ("config", "layers", i) for i, e in enumerate(spec["config"]["layers"])}
    ids, mask, embedded = _first_arg(spec, "Embedding"), _lstm_mask(spec), _first_arg(spec, "LSTM")

    error = refused(lambda c: _op(c, "Sin", [ids]))
    assert error.loc == (*at["NotEqual"], "class_name")
    assert "unknown Keras op 'Sin'" in error.message and repr(names[2]) in error.message
    error = refused(lambda c: _entry(c, "NotEqual").update(module="mypkg.ops"))
    assert error.loc == (*at["NotEqual"], "module") and "Keras's own" in error.message
    error = refused(lambda c: _entry(c, "NotEqual").update(module="keras.src.ops.math"))
    assert error.loc == (*at["NotEqual"], "module")
    for second in ("0", ids, None, float("inf")):
        error = refused(lambda c, s=second: _op(c, "NotEqual", [ids, s]))
        assert error.loc == (*at["NotEqual"], "inbound_nodes", 0, "args", 1), second
    error = refused(lambda c: _op(c, "ZerosLike", [ids], dtype="float32"))
    assert error.loc == (*at["NotEqual"], "config", "dtype")
    error = refused(lambda c: _op(c, "Any", [ids], axis=-1, keepdims=False))
    assert error.loc == (*at["NotEqual"], "inbound_nodes", 0) and "masks" in error.message
    error = refused(lambda c: _entry(c, "NotEqual")["inbound_nodes"].append(
        {"args": [ids, 0], "kwargs": {}}))  # fmt: skip
    assert error.loc == (*at["NotEqual"], "inbound_nodes")
    error = refused(lambda c: _entry(c, "Dense")["inbound_nodes"][0]["kwargs"].update(mask=mask))
    assert error.loc == (*at["Dense"], "inbound_nodes", 0, "kwargs", "mask")
    assert "takes no call argument 'mask'" in error.message
    error = refused(lambda c: _entry(c, "LSTM")["inbound_nodes"][0]["kwargs"].update(
        mask=embedded))  # fmt: skip
    assert error.loc == (*at["LSTM"], "inbound_nodes", 0, "kwargs", "mask")
    assert "boolean" in error.message
    error = refused(lambda c: _entry(c, "Dense")["inbound_nodes"][0].update(args=[mask]))
    assert error.loc == (*at["Dense"], "inbound_nodes", 0) and "as data" in error.message
    error = refused(lambda c: c["config"].update(output_layers=[names[2], 0, 0]))
    assert error.loc == ("config", "output_layers", 0)


@pytest.mark.parametrize("axis", [-1, 0])
def test_a_widened_mask_is_refused(keras: ModuleType, axis: int) -> None:
    """A mask widened to (batch, steps, 1) is not what an LSTM takes, (batch, steps); and no op
    works along the batch axis."""
    spec = json.loads(_text_model(keras).to_json())
    widened = copy.deepcopy(_lstm_mask(spec))
    widened["config"]["keras_history"] = ["widened", 0, 0]
    spec["config"]["layers"].insert(3, {
        "module": "keras.src.ops.numpy", "class_name": "ExpandDims", "registered_name":
        "ExpandDims", "name": "widened", "config": {"name": "widened", "axis": axis},
        "inbound_nodes": [{"args": [_lstm_mask(spec)], "kwargs": {}}]})  # fmt: skip
    _entry(spec, "LSTM")["inbound_nodes"][0]["kwargs"]["mask"] = widened
    with pytest.raises(ConfigError) as info:
        Model.dry_run(spec)
    if axis == 0:
        assert info.value.loc == ("config", "layers", 3, "config", "axis")
        return
    assert info.value.loc == ("config", "layers", 4, "inbound_nodes", 0, "kwargs", "mask")
    assert "takes a mask of shape [None, 7] here, got [None, 7, 1]" in info.value.message
