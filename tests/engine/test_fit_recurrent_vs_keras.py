"""Recurrent models fit like Keras 3 on torch: the same model JSON, the same initial weights, the
same data, shuffle off; History and final weights compared. Covers Keras's fused LSTM/GRU path,
the GRU with reset_after false, SimpleRNN, Bidirectional with TimeDistributed, and masked
sequences (Embedding(mask_zero) through LSTM, GRU and BatchNormalization with masked batch
statistics) whose loss counts only the unmasked steps.

Measured: every History loss within 2e-7 relative (most bit-equal), final weights within 1.2e-7
absolute (gradients are summed in a different order than Keras's autograd graph)."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
import pytest

from app.engine.models.model import Model
from app.engine.training.compile import CompileSpec
from app.engine.training.fit_args import FitArgs
from app.engine.training.trainer import Trainer
from tests.support.keras_fit import fit_results
from tests.support.keras_json import keras_json
from tests.support.tolerance import assert_within_drift, keras_drift

K = "keras.layers"
N, T, F = 48, 6, 3
RNG = np.random.default_rng(0)
X = RNG.normal(size=(N, T, F)).astype(np.float32)
Y = RNG.normal(size=(N, 2)).astype(np.float32)
Y_SEQ = RNG.normal(size=(N, T, 2)).astype(np.float32)
Y_CLASS = RNG.integers(0, 3, size=(N, T)).astype(np.float32)


def padded_ids(rng: np.random.Generator, n: int, t: int, vocab: int) -> np.ndarray:
    """Right-padded id sequences of random lengths (1 to t), and one hole in the middle."""
    ids = rng.integers(1, vocab, size=(n, t)).astype(np.float32)
    for i, length in enumerate(rng.integers(1, t + 1, size=n)):
        ids[i, length:] = 0
    ids[3, 1] = 0
    return ids


IDS = padded_ids(RNG, N, T, 6)


def model_config(layers: list[tuple[str, dict[str, Any]]], shape: list[Any]) -> dict[str, Any]:
    entries = [{"class_name": "InputLayer", "config": {"batch_shape": shape}}]
    entries += [{"class_name": c, "config": k} for c, k in layers]
    return {"class_name": "Sequential", "config": {"name": "m", "layers": entries}}


def _embed() -> tuple[str, dict[str, Any]]:
    return ("Embedding", {"input_dim": 6, "output_dim": 4, "mask_zero": True})


CASES = {
    "lstm": ([("LSTM", {"units": 8, "return_sequences": True}), ("LSTM", {"units": 4}),
              ("Dense", {"units": 2})], [None, T, F], X, Y, "mse"),
    "gru": ([("GRU", {"units": 8, "return_sequences": True}),
             ("GRU", {"units": 4, "reset_after": False}), ("Dense", {"units": 2})],
            [None, T, F], X, Y, "mse"),
    "simple_rnn": ([("SimpleRNN", {"units": 6}), ("Dense", {"units": 2})], [None, T, F], X, Y,
                   "mse"),
    "bidirectional": ([("Bidirectional", {"layer": {"module": K, "class_name": "LSTM",
                                                    "config": {"units": 4,
                                                               "return_sequences": True}}}),
                       ("TimeDistributed", {"layer": {"module": K, "class_name": "Dense",
                                                      "config": {"units": 2}}})],
                      [None, T, F], X, Y_SEQ, "mse"),
    "masked_lstm": ([_embed(), ("LSTM", {"units": 5, "return_sequences": True}),
                     ("Dense", {"units": 3, "activation": "softmax"})], [None, T], IDS, Y_CLASS,
                    "sparse_categorical_crossentropy"),
    "masked_bn_gru": ([_embed(), ("BatchNormalization", {}),
                       ("GRU", {"units": 5, "return_sequences": True}),
                       ("Dense", {"units": 3, "activation": "softmax"})], [None, T], IDS, Y_CLASS,
                      "sparse_categorical_crossentropy"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_recurrent_fit_matches_keras(keras: ModuleType, case: str) -> None:
    layers, shape, x, y, loss = CASES[case]
    config = model_config(layers, shape)

    def keras_run(weights: list[np.ndarray]) -> dict[str, Any]:
        km = keras.models.model_from_json(keras_json(config))
        km.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss=loss)
        km.set_weights(weights)
        kh = km.fit(x, y, batch_size=16, epochs=5, shuffle=False, verbose=0)
        theirs = km.evaluate(x, y, batch_size=20, return_dict=True, verbose=0)
        return fit_results(kh.history, km, lambda _: {"evaluate loss": theirs["loss"]})

    initial = keras.models.model_from_json(keras_json(config)).get_weights()
    ours = Model.from_config(config, seed=0)
    ours.set_weights(initial)
    adam = {"class_name": "Adam", "config": {"learning_rate": 0.01}}
    trainer = Trainer(ours, CompileSpec.parse({"optimizer": adam, "loss": loss}))
    history = trainer.fit(x, y, args=FitArgs(batch_size=16, epochs=5, shuffle=False))
    results = {**{f"history {k}": v for k, v in history.history.items()},
               **{f"weight {i}": w for i, w in enumerate(trainer.model.get_weights())},
               "evaluate loss": trainer.evaluate(x, y, batch_size=20)["loss"]}  # fmt: skip
    # 15 Adam steps through recurrences: every value held to a multiple of Keras's own drift
    # from initial weights moved by one ulp (CONTRIBUTING.md).
    theirs = keras_run(initial)
    drift = keras_drift(keras_run, initial, baseline=theirs)
    assert isinstance(drift, dict)
    assert_within_drift(results, theirs, drift)
