"""Inputs of Keras's other dtypes, against Keras 3 (torch backend): models from Keras's own
`to_json()`, Keras's weights copied over, the same data in both.

A text model (int32 ids -> Embedding(mask_zero) -> LSTM -> Dense), uint8 images (through
Rescaling, or Flatten straight into Dense), and the other dtypes into the layers that read them
match Keras through predict, evaluate, fit (History and final weights) and the *_on_batch calls;
float data given to an integer input is truncated as Keras truncates it, integers given to a
half-float input rounded as Keras rounds them. Layers Keras cannot run on such a tensor, and
values an input's dtype cannot hold, are refused up front. A batch cast on the device from its
stored dtype equals the inline batch bit for bit, and the dtype round-trips through the model
JSON.

Measured: predict, evaluate, adapt and the on-batch calls bit-identical; fits (History and
weights) within 1.2e-7 absolute where values are below 1, and 1.9e-7 relative above (an mse of
raw 0-200 integers runs to tens of thousands); fits asserted to a multiple of Keras's own one-ulp
drift (CONTRIBUTING.md)."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from app.engine.arrays.checks import XY, Arrays, cast_input, read_inputs, to_array
from app.engine.arrays.dtypes import INPUT_DTYPES
from app.engine.config.errors import ConfigError, DataError
from app.engine.models.model import Model
from app.engine.training import on_batch
from app.engine.training.adapt import adapt_model
from app.engine.training.compile import CompileSpec
from app.engine.training.fit_args import FitArgs
from app.engine.training.trainer import Trainer
from tests.support.keras_fit import assert_fit_within_drift, named_results

RNG = np.random.default_rng(5)
T, VOCAB = 7, 30
IDS = RNG.integers(1, VOCAB, size=(48, T)).astype(np.int32)
for _i, _n in enumerate(RNG.integers(1, T + 1, size=48)):
    IDS[_i, _n:] = 0  # right-padded sequences for mask_zero
Y3 = RNG.integers(0, 3, size=(48,)).astype(np.float32)
IMAGES = RNG.integers(0, 256, size=(40, 6, 6, 1)).astype(np.uint8)
Y1 = RNG.normal(size=(40, 1)).astype(np.float32)
ADAM = {"class_name": "Adam", "config": {"learning_rate": 0.01}}


def _ours(keras_model: Any, compile_cfg: dict[str, Any]) -> Trainer:
    """Our trainer for a Keras model, from its own to_json(), with its weights."""
    model = Model.from_config(json.loads(keras_model.to_json()), seed=0)
    model.set_weights(keras_model.get_weights())
    return Trainer(model, CompileSpec.parse(compile_cfg), device=torch.device("cpu"))


def _keras_compile(keras: ModuleType, km: Any, loss: str, metrics: list[str]) -> None:
    km.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss=loss, metrics=metrics)


def _text_model(keras: ModuleType) -> Any:
    layers = keras.layers
    keras.utils.set_random_seed(3)
    return keras.Sequential([
        keras.Input((T,), dtype="int32", name="tokens"),
        layers.Embedding(VOCAB, 8, mask_zero=True),
        layers.LSTM(6),
        layers.Dense(3, activation="softmax"),
    ])  # fmt: skip


@pytest.mark.fit  # a differential fit: run again on the baseline kernels
def test_text_model_matches_keras(keras: ModuleType) -> None:
    km = _text_model(keras)
    _keras_compile(keras, km, "sparse_categorical_crossentropy", ["accuracy"])
    trainer = _ours(km, {"optimizer": ADAM, "loss": "sparse_categorical_crossentropy",
                         "metrics": ["accuracy"]})  # fmt: skip
    assert trainer.model.input_dtypes == [torch.int32]
    want = km.predict(IDS, batch_size=16, verbose=0)
    assert np.array_equal(trainer.predict(IDS, batch_size=16), want)
    assert np.array_equal(trainer.predict(IDS.tolist(), batch_size=16), want)  # inline JSON ints
    # Floats into the int32 input are truncated toward zero (0.6 is the padding id 0).
    floats = IDS + np.float32(0.6)
    assert np.array_equal(trainer.predict(floats.tolist(), batch_size=16),
                          km.predict(floats, batch_size=16, verbose=0))  # fmt: skip
    theirs = km.evaluate(IDS, Y3, batch_size=10, return_dict=True, verbose=0)
    assert trainer.evaluate(IDS.tolist(), Y3, batch_size=10) == theirs
    initial = km.get_weights()

    def replay(m: Any) -> dict[str, Any]:
        kh = m.fit(IDS, Y3, batch_size=8, epochs=3, shuffle=False, verbose=0).history
        val = m.evaluate(IDS, Y3, batch_size=8, return_dict=True, verbose=0)
        return named_results(kh, m.get_weights(), **{f"val {k}": v for k, v in val.items()})

    theirs = replay(km)
    history = trainer.fit(IDS.tolist(), Y3, args=FitArgs(batch_size=8, epochs=3, shuffle=False),
                          validation_data=(IDS, Y3)).history  # fmt: skip
    # The last epoch's validation is evaluate on its final weights.
    ours = named_results({k: v for k, v in history.items() if not k.startswith("val_")},
                    trainer.model.get_weights(),
                    **{f"val {k[4:]}": v[-1] for k, v in history.items()
                       if k.startswith("val_")})  # fmt: skip
    assert_fit_within_drift(keras, km, ours, theirs, initial=initial, replay=replay)


@pytest.mark.fit  # a differential fit: run again on the baseline kernels
def test_functional_int_input_matches_keras(keras: ModuleType) -> None:
    """Ids and float features side by side: an int32 input into an Embedding and a GRU, a
    float16 one into a Dense, joined (no mask here; masks that Keras writes as op nodes are
    tested in test_mask_ops_vs_keras.py)."""
    layers = keras.layers
    keras.utils.set_random_seed(4)
    ids = keras.Input((T,), dtype="int32", name="ids")
    extra = keras.Input((3,), dtype="float16", name="extra")
    h = layers.GRU(5, name="gru")(layers.Embedding(VOCAB, 4, name="emb")(ids))
    joined = layers.Concatenate(name="cat")([h, layers.Dense(2, name="proj")(extra)])
    km = keras.Model([ids, extra], layers.Dense(1, name="out")(joined))
    _keras_compile(keras, km, "mse", [])
    trainer = _ours(km, {"optimizer": ADAM, "loss": "mse"})
    assert trainer.model.input_dtypes == [torch.int32, torch.float16]
    feats = RNG.normal(size=(48, 3)).astype(np.float32)
    y = RNG.normal(size=(48, 1)).astype(np.float32)
    x = {"ids": IDS.tolist(), "extra": feats.tolist()}
    assert np.array_equal(trainer.predict(x), km.predict([IDS, feats], verbose=0))
    initial = km.get_weights()

    def replay(m: Any) -> dict[str, Any]:
        kh = m.fit([IDS, feats], y, batch_size=12, epochs=3, shuffle=False, verbose=0)
        return named_results(kh.history, m.get_weights())

    theirs = replay(km)
    history = trainer.fit(x, y, args=FitArgs(batch_size=12, epochs=3, shuffle=False))
    ours = named_results(history.history, trainer.model.get_weights())
    assert_fit_within_drift(keras, km, ours, theirs, initial=initial, replay=replay)


@pytest.mark.fit  # a differential fit: run again on the baseline kernels
@pytest.mark.parametrize("through", ["rescaling", "flatten"])
def test_uint8_images_match_keras(keras: ModuleType, through: str) -> None:
    layers = keras.layers
    keras.utils.set_random_seed(5)
    head = (
        [layers.Rescaling(1 / 255), layers.Flatten()]
        if through == "rescaling"
        else [layers.Flatten()]  # Flatten passes uint8 on; Dense computes in float32
    )
    km = keras.Sequential([keras.Input((6, 6, 1), dtype="uint8"), *head,
                           layers.Dense(4, activation="relu"), layers.Dense(1)])  # fmt: skip
    _keras_compile(keras, km, "mse", ["mae"])
    trainer = _ours(km, {"optimizer": ADAM, "loss": "mse", "metrics": ["mae"]})
    assert np.array_equal(trainer.predict(IMAGES.tolist()), km.predict(IMAGES, verbose=0))
    assert trainer.evaluate(IMAGES, Y1, batch_size=16) == km.evaluate(
        IMAGES, Y1, batch_size=16, return_dict=True, verbose=0
    )
    part, y_part = IMAGES[:10], Y1[:10]
    initial = km.get_weights()
    theirs = km.predict_on_batch(part)
    assert np.array_equal(on_batch.predict_on_batch(trainer.model, part.tolist()), theirs)
    theirs = km.test_on_batch(part, y_part, return_dict=True)
    assert on_batch.test_on_batch(trainer, part.tolist(), y_part) == theirs
    theirs = km.train_on_batch(part, y_part, return_dict=True)  # the fit below continues it
    assert on_batch.train_on_batch(trainer, part.tolist(), y_part) == theirs
    keras_history = km.fit(IMAGES, Y1, batch_size=8, epochs=3, shuffle=False, verbose=0)
    history = trainer.fit(IMAGES.tolist(), Y1, args=FitArgs(batch_size=8, epochs=3,
                                                            shuffle=False))  # fmt: skip

    def replay(m: Any) -> dict[str, Any]:  # the step on one batch, then the fit
        m.train_on_batch(part, y_part)
        kh = m.fit(IMAGES, Y1, batch_size=8, epochs=3, shuffle=False, verbose=0)
        return named_results(kh.history, m.get_weights())

    theirs = named_results(keras_history.history, km.get_weights())
    ours = named_results(history.history, trainer.model.get_weights())
    assert_fit_within_drift(keras, km, ours, theirs, initial=initial, replay=replay)


def test_adapt_on_an_integer_input_matches_keras(keras: ModuleType) -> None:
    """A Normalization reading uint8 pixels is adapted on the integers themselves: numpy's
    statistics of integers (in float64), as Keras's `adapt` on the uint8 array gives them."""
    pixels = IMAGES.reshape(40, 36)
    keras.utils.set_random_seed(7)
    km = keras.Sequential([keras.Input((36,), dtype="uint8"), keras.layers.Normalization(),
                           keras.layers.Dense(2)])  # fmt: skip
    model = Model.from_config(json.loads(km.to_json()), seed=0)
    model.set_weights(km.get_weights())
    km.layers[0].adapt(pixels)
    assert adapt_model(model, pixels.tolist()) == [km.layers[0].name]
    for got, want in zip(model.get_weights(), km.get_weights(), strict=True):
        assert np.array_equal(got, want)
    assert np.array_equal(on_batch.predict_on_batch(model, pixels), km.predict(pixels, verbose=0))


# (input dtype, the layers after it, input shape): every pair of dtype and reading layer.
CASES = {
    "float16-dense": ("float16", [("Dense", {"units": 3})], (4,)),
    "bfloat16-dense": ("bfloat16", [("Dense", {"units": 3})], (4,)),
    "float64-batchnorm": ("float64", [("BatchNormalization", {}), ("Dense", {"units": 2})], (4,)),
    "float16-layernorm-after-dense": ("float16", [("Dense", {"units": 3}),
                                                  ("LayerNormalization", {})], (4,)),
    "int64-normalization": ("int64", [("Normalization", {"mean": 2.0, "variance": 3.0}),
                                      ("Dense", {"units": 2})], (4,)),
    "int32-batchnorm": ("int32", [("BatchNormalization", {}), ("Dense", {"units": 2})], (4,)),
    "bool-dense": ("bool", [("Dense", {"units": 3, "activation": "tanh"})], (4,)),
    "uint8-reshape-simplernn": ("uint8", [("Reshape", {"target_shape": [3, 2]}),
                                          ("SimpleRNN", {"units": 3})], (6,)),
    "int32-permute-gru": ("int32", [("Permute", {"dims": [2, 1]}), ("GRU", {"units": 2})],
                          (2, 3)),
    "int64-pad-crop-flatten-dense": ("int64", [("ZeroPadding1D", {"padding": 1}),
                                               ("Cropping1D", {"cropping": [0, 1]}),
                                               ("Flatten", {}), ("Dense", {"units": 2})], (3, 2)),
    "uint8-repeat-upsample-lstm": ("uint8", [("RepeatVector", {"n": 2}),
                                             ("UpSampling1D", {"size": 2}),
                                             ("LSTM", {"units": 2})], (3,)),
    "bool-embedding": ("bool", [("Embedding", {"input_dim": 2, "output_dim": 3}),
                                ("Flatten", {}), ("Dense", {"units": 1})], (4,)),
}  # fmt: skip


def _data(dtype: str, shape: tuple[int, ...], kind: str) -> np.ndarray:
    """Data of `kind` for an input: float data, integers, or booleans."""
    size = (24, *shape)
    if kind == "bool":
        return RNG.integers(0, 2, size=size).astype(bool)
    if kind == "int":
        return RNG.integers(0, 2 if dtype == "bool" else 200, size=size).astype(np.int64)
    top = 1.99 if dtype == "bool" else 200.0
    return RNG.uniform(0.0, top, size=size).astype(np.float32)


def _keras_sequential(keras: ModuleType, dtype: str, layers: list[Any], shape: Any) -> Any:
    entries = [{"module": "keras.layers", "class_name": "InputLayer",
                "config": {"batch_shape": [None, *shape], "dtype": dtype}}]  # fmt: skip
    entries += [{"module": "keras.layers", "class_name": c, "config": k} for c, k in layers]
    spec = {"module": "keras", "class_name": "Sequential",
            "config": {"name": "m", "layers": entries}}  # fmt: skip
    keras.utils.set_random_seed(6)
    return keras.models.model_from_json(json.dumps(spec))


@pytest.mark.fit  # a differential fit: run again on the baseline kernels
@pytest.mark.parametrize("case", sorted(CASES))
def test_each_dtype_reads_as_keras_reads_it(keras: ModuleType, case: str) -> None:
    dtype, layers, shape = CASES[case]
    km = _keras_sequential(keras, dtype, layers, shape)
    trainer = _ours(km, {"optimizer": ADAM, "loss": "mse"})
    assert trainer.model.input_dtypes == [INPUT_DTYPES[dtype]]
    for kind in ("float", "int", "bool"):
        x = _data(dtype, shape, kind)
        assert np.array_equal(trainer.predict(x.tolist()), km.predict(x, verbose=0)), kind
    x = _data(dtype, shape, "int")
    y = RNG.normal(size=(24, km.output_shape[-1])).astype(np.float32)
    km.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss="mse")
    initial = km.get_weights()

    def replay(m: Any) -> dict[str, Any]:
        kh = m.fit(x, y, batch_size=8, epochs=2, shuffle=False, verbose=0)
        return named_results(kh.history, m.get_weights())

    theirs = replay(km)
    history = trainer.fit(x.tolist(), y, args=FitArgs(batch_size=8, epochs=2, shuffle=False))
    ours = named_results(history.history, trainer.model.get_weights())
    assert_fit_within_drift(keras, km, ours, theirs, initial=initial, replay=replay)


@pytest.mark.parametrize(
    ("dtype", "layers", "shape", "index", "text"),
    [
        ("uint8", [("Conv2D", {"filters": 2, "kernel_size": 2})], [4, 4, 1], 1, "cannot read"),
        ("int32", [("Flatten", {}), ("Softmax", {})], [2, 2], 2, "Softmax cannot read an int32"),
        ("int32", [("LSTM", {"units": 2, "dropout": 0.2})], [3, 2], 1, "cannot read"),
        ("float16", [("LayerNormalization", {})], [4], 1, "computes on a float16 tensor"),
        ("bfloat16", [("GroupNormalization", {"groups": 2})], [4], 1, "bfloat16 tensor"),
    ],
)  # fmt: skip
def test_layers_keras_cannot_run_on_the_dtype_are_refused(
    dtype: str, layers: list[Any], shape: list[int], index: int, text: str
) -> None:
    entries = [{"class_name": "InputLayer", "config": {"batch_shape": [None, *shape],
                                                       "dtype": dtype}}]  # fmt: skip
    entries += [{"class_name": c, "config": k} for c, k in layers]
    with pytest.raises(ConfigError) as info:
        Model.dry_run({"class_name": "Sequential", "config": {"layers": entries}})
    assert info.value.loc == ("config", "layers", index)
    assert text in info.value.message


def test_an_unknown_input_dtype_is_refused() -> None:
    entries = [{"class_name": "InputLayer", "config": {"batch_shape": [None, 2], "dtype": "str"}},
               {"class_name": "Dense", "config": {"units": 1}}]  # fmt: skip
    with pytest.raises(ConfigError) as info:
        Model.dry_run({"class_name": "Sequential", "config": {"layers": entries}})
    assert info.value.loc == ("config", "layers", 0, "config", "dtype")


@pytest.mark.parametrize(
    ("dtype", "value", "fits"),
    [
        ("uint8", 255, True), ("uint8", 256, False), ("uint8", -1, False),
        ("uint8", -0.5, True), ("uint8", 255.9, True), ("uint8", 256.0, False),
        ("int32", 2**31 - 1, True), ("int32", 2**31, False), ("int32", -(2**31), True),
        ("int64", 2**63 - 1, True), ("int64", 2**63, False), ("int64", 1e19, False),
        ("float16", 65519.0, True), ("float16", 65520, False), ("bfloat16", 3e38, True),
        ("bfloat16", 3.4e38, False), ("bool", 1e30, True), ("float64", -3e38, True),
    ],
)  # fmt: skip
def test_values_an_input_dtype_cannot_hold_are_refused(dtype: str, value: Any, fits: bool) -> None:
    x = [[0, value], [1, 2]]
    if fits:
        read_inputs(x, ["x"], [(None, 2)], ("x",), [INPUT_DTYPES[dtype]])
        return
    with pytest.raises(DataError) as info:
        read_inputs(x, ["x"], [(None, 2)], ("x",), [INPUT_DTYPES[dtype]])
    assert info.value.loc[0] == "x"
    assert dtype in info.value.message or "int64" in info.value.message


def test_json_integers_stay_integers() -> None:
    """Ids above 2**24 (where float32 has gaps) reach an integer input exactly."""
    big = [[2**24 + 1, 2**53 + 1]]
    (host,) = read_inputs(big, ["x"], [(None, 2)], ("x",), [torch.int64])
    assert host.dtype == np.int64
    (tensor,) = Arrays.from_numpy(XY([host], [None], [None]), torch.device("cpu"), [torch.int64]).x
    assert tensor.tolist() == big
    (host32,) = read_inputs([[2**24 + 1]], ["x"], [(None, 1)], ("x",), [torch.int32])
    assert cast_input(torch.from_numpy(host32), torch.int32).tolist() == [[2**24 + 1]]


STORED = ["uint8", "int32", "int64", "float32", "float64", "float16", "bool"]


@pytest.mark.parametrize("input_dtype", sorted(INPUT_DTYPES))
def test_a_batch_from_its_stored_dtype_equals_the_inline_batch(input_dtype: str) -> None:
    """What a data source reading arrays in their stored dtype gets from `cast_input` on the
    device is exactly what the inline path (the same numbers as JSON) gives."""
    target = INPUT_DTYPES[input_dtype]
    for stored in STORED:
        if stored == "bool":
            values = RNG.integers(0, 2, size=(5, 3)).astype(bool)
        elif stored.startswith("float"):
            values = RNG.uniform(0, 250, size=(5, 3)).astype(stored)
        else:
            values = RNG.integers(0, 250, size=(5, 3)).astype(stored)
        from_file = cast_input(torch.from_numpy(values), target)
        inline = to_array(values.tolist(), ("x",), dtype=target)
        (batch,) = Arrays.from_numpy(XY([inline], [None], [None]), torch.device("cpu"), [target]).x
        assert from_file.dtype == batch.dtype == target
        assert torch.equal(from_file, batch), (stored, input_dtype)


def test_the_dtype_round_trips_through_the_model_json(keras: ModuleType) -> None:
    layers = keras.layers
    ids = keras.Input((5,), dtype="uint8", name="pixels")
    km = keras.Model(ids, layers.Dense(1, name="out")(layers.Flatten(name="flat")(ids)))
    model = Model.from_config(json.loads(km.to_json()), seed=0)
    config = model.get_config()
    entries = {e["name"]: e for e in config["config"]["layers"]}
    assert entries["pixels"]["config"]["dtype"] == "uint8"
    flat_in = entries["flat"]["inbound_nodes"][0]["args"][0]["config"]
    out_in = entries["out"]["inbound_nodes"][0]["args"][0]["config"]
    assert (flat_in["dtype"], out_in["dtype"]) == ("uint8", "uint8")  # Flatten keeps uint8
    assert Model.from_config(config, seed=0).input_dtypes == [torch.uint8]
    assert keras.models.model_from_json(json.dumps(config)).inputs[0].dtype == "uint8"
    assert model.summary()["inputs"] == [{"name": "pixels", "shape": [None, 5], "dtype": "uint8"}]
    sequential = Model.from_config(json.loads(_text_model(keras).to_json()), seed=0)
    again = keras.models.model_from_json(json.dumps(sequential.get_config()))
    assert again.inputs[0].dtype == "int32"


def test_a_first_layer_names_the_input_dtype_beside_its_input_shape() -> None:
    """tf.keras 2's form: `batch_input_shape` and `dtype` on the first layer."""
    first = {
        "class_name": "Embedding",
        "config": {
            "input_dim": 10,
            "output_dim": 2,
            "batch_input_shape": [None, 3],
            "dtype": "int32",
        },
    }
    spec = {"class_name": "Sequential", "config": {"layers": [first]}}
    model = Model.from_config(spec, seed=0)
    assert model.input_dtypes == [torch.int32]
    entries = model.get_config()["config"]["layers"]
    assert entries[0]["config"]["dtype"] == "int32" and entries[1]["config"]["dtype"] == "float32"
