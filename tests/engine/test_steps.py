"""The trainer's public steps: a loop written with `train_step`, `test_step`,
`predict_step`, `reset_metrics` and `get_metrics_result` alone gives what fit, evaluate and
predict give, bit for bit."""

from __future__ import annotations

import numpy as np
import torch

from app.engine.arrays.checks import Arrays
from app.engine.models.model import Model
from app.engine.training.compile import CompileSpec
from app.engine.training.fit_args import FitArgs
from app.engine.training.trainer import Trainer
from tests.support.keras_fit import sequential

RNG = np.random.default_rng(5)
X = RNG.normal(size=(24, 3)).astype(np.float32)
Y = (X.sum(axis=1, keepdims=True) > 0).astype(np.float32)
MODEL = sequential([("Dense", {"units": 4, "activation": "relu"}),
                    ("Dense", {"units": 1, "activation": "sigmoid"})], [None, 3])  # fmt: skip
COMPILE = {"optimizer": {"class_name": "Adam", "config": {"learning_rate": 0.01}},
           "loss": "binary_crossentropy", "metrics": ["accuracy"]}  # fmt: skip


def _trainer() -> Trainer:
    return Trainer(Model.from_config(MODEL, seed=0), CompileSpec.parse(COMPILE),
                   device=torch.device("cpu"))  # fmt: skip


def test_a_loop_of_public_steps_is_fit_evaluate_and_predict() -> None:
    fitted = _trainer()
    history = fitted.fit(X, Y, args=FitArgs(batch_size=8, epochs=2, shuffle=False)).history
    ours = _trainer()
    data = Arrays.from_numpy(ours.prepare(X, Y), ours.device, ours.model.input_dtypes)
    logs: dict[str, float] = {}
    for _ in range(2):
        ours.reset_metrics()
        for lo in range(0, data.size, 8):
            ours.train_step(data.take(slice(lo, lo + 8)))
        logs = ours.get_metrics_result()
    assert logs == {k: v[-1] for k, v in history.items()}
    for a, b in zip(ours.model.get_weights(), fitted.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    ours.reset_metrics()
    for lo in range(0, data.size, 8):
        ours.test_step(data.take(slice(lo, lo + 8)))
    assert ours.get_metrics_result() == fitted.evaluate(X, Y, batch_size=8)
    (out,) = ours.predict_step(data.take(slice(0, data.size)).inputs)
    predicted = fitted.predict(X, batch_size=data.size)
    assert isinstance(predicted, np.ndarray)
    np.testing.assert_array_equal(out.numpy(), predicted)
