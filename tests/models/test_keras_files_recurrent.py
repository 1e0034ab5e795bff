"""`.keras` weights of recurrent layers and wrappers at the paths Keras's saver uses (an RNN's
weights under its cell, a Bidirectional's under forward_layer/backward_layer, a
TimeDistributed's under layer), both ways with Keras."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from app.engine.models.model import Model
from app.models import keras_files

os.environ.setdefault("KERAS_BACKEND", "torch")


def test_recurrent_weights_go_both_ways_with_keras(tmp_path: Path) -> None:
    import keras

    layers = keras.layers
    keras.utils.set_random_seed(0)  # unseeded weights made the 1-ulp differences below flaky
    km = keras.Sequential([
        keras.Input((5, 3)), layers.LSTM(2, return_sequences=True),
        layers.Bidirectional(layers.GRU(2, return_sequences=True)),
        layers.TimeDistributed(layers.Dense(2)), layers.Masking(), layers.SimpleRNN(2),
    ])  # fmt: skip
    km.save(tmp_path / "theirs.keras")
    ours = Model.from_config(json.loads(km.to_json()), seed=0)
    h5 = zipfile.ZipFile(tmp_path / "theirs.keras").read("model.weights.h5")
    ours.set_weights(keras_files.read_weights(ours, h5))
    x = np.random.default_rng(0).normal(size=(4, 5, 3)).astype(np.float32)
    want = km.predict(x, verbose=0)
    with torch.no_grad():  # the recurrent input projection runs as one matmul: a few ulps apart
        np.testing.assert_allclose(ours(torch.as_tensor(x)).numpy(), want, rtol=1e-6, atol=1e-7)
    (tmp_path / "ours.keras").write_bytes(keras_files.write_archive(ours, None))
    again = keras.models.load_model(tmp_path / "ours.keras")
    np.testing.assert_array_equal(again.predict(x, verbose=0), want)
