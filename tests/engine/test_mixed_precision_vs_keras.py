"""The dtype policies against Keras 3 (torch backend): mixed_float16 with Keras's dynamic loss
scaling, mixed_bfloat16 without it.

Both libraries compute the layers in half precision and keep float32 variables, but torch's
autocast picks per op (products in half, some reductions in float32) where Keras runs every
layer op in the compute dtype; so the numbers agree to the half type's rounding (float16's
relative epsilon is 2**-10, bfloat16's 2**-7; `_tolerance` derives the bounds from it). The
loss-scale bookkeeping (skipped steps, the scale) must agree exactly.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest
import torch

from app.engine.models.model import Model
from app.engine.training.compile import CompileSpec
from app.engine.training.fit_args import FitArgs
from app.engine.training.inference import predict
from app.engine.training.on_batch import predict_on_batch
from app.engine.training.precision import LossScaler
from app.engine.training.trainer import Trainer
from tests.support.keras_fit import sequential
from tests.support.keras_json import keras_json

RNG = np.random.default_rng(11)
X = RNG.normal(size=(40, 4)).astype(np.float32)
Y = (X[:, :1] * 2).astype(np.float32)
MODEL = sequential([("Dense", {"units": 8, "activation": "tanh"}), ("Dense", {"units": 1})],
                   [None, 4])  # fmt: skip
COMPILE = {"optimizer": "sgd", "loss": "mse", "metrics": ["mae"]}
EPS = {"mixed_float16": 2.0**-10, "mixed_bfloat16": 2.0**-7}
STEPS, LR = 15, 0.01  # 40 samples in batches of 8, 3 epochs; SGD's default learning rate


def _tolerance(policy: str) -> tuple[float, float]:
    """(relative for the History, absolute for the weights). Losses and metrics: one unit in the
    last place of the half type. Weights: SGD moves them by lr * gradient each step, and a
    gradient computed in half precision is off by up to eps of its size (about 1 here), so
    after STEPS steps they may differ by STEPS * LR * eps."""
    eps = EPS[policy]
    return eps, STEPS * LR * eps


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_fit_matches_keras(keras: ModuleType, policy: str) -> None:
    keras.utils.set_random_seed(1)  # initial weights, hence the overflows, are reproducible
    keras.mixed_precision.set_dtype_policy(policy)
    try:
        km = keras.models.model_from_json(keras_json(MODEL))
        km.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    model = Model.from_config(MODEL, seed=0)
    model.set_weights(km.get_weights())
    trainer = Trainer(model, CompileSpec.parse({**COMPILE, "dtype_policy": policy}))
    kh = km.fit(X, Y, batch_size=8, epochs=3, shuffle=False, verbose=0)
    history = trainer.fit(X, Y, args=FitArgs(batch_size=8, epochs=3, shuffle=False))
    rtol, atol = _tolerance(policy)
    assert sorted(history.history) == sorted(kh.history)
    for key, theirs in kh.history.items():
        np.testing.assert_allclose(history.history[key], theirs, rtol=rtol, err_msg=key)
    for ours, theirs in zip(model.get_weights(), km.get_weights(), strict=True):
        assert ours.dtype == np.float32  # variables stay float32
        np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol)
    assert int(trainer.optimizer.iterations) == int(km.optimizer.iterations)
    if policy == "mixed_float16":
        # The first scaled steps overflow float16 in both: skipped, and the scale halved.
        assert trainer.loss_scaler is not None
        assert trainer.loss_scaler.scale == float(km.optimizer.dynamic_scale.numpy()) < 2**15
    else:
        assert trainer.loss_scaler is None


def test_auto_scale_loss_false_turns_the_scaler_off() -> None:
    spec = CompileSpec.parse({**COMPILE, "dtype_policy": "mixed_float16", "auto_scale_loss": False})
    assert Trainer(Model.from_config(MODEL, seed=0), spec).loss_scaler is None


def _params(*grads: float) -> list[torch.nn.Parameter]:
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in grads]
    for p, g in zip(params, grads, strict=True):
        p.grad = torch.tensor([g])
    return params


def test_loss_scaler_halves_and_skips_on_overflow_and_grows_after_2000_steps() -> None:
    scaler = LossScaler()
    assert scaler.scale == 2.0**15
    assert not scaler.unscale(_params(1.0, float("inf")))
    assert (scaler.scale, scaler.counter) == (2.0**14, 0)
    for _ in range(1999):
        assert scaler.unscale(_params(2.0**14))
    assert (scaler.scale, scaler.counter) == (2.0**14, 1999)
    params = _params(2.0**14)
    assert scaler.unscale(params)
    assert params[0].grad is not None and float(params[0].grad) == 1.0  # unscaled, then grown
    assert (scaler.scale, scaler.counter) == (2.0**15, 0)


def test_the_loss_scale_is_part_of_the_checkpoint() -> None:
    spec = CompileSpec.parse({**COMPILE, "dtype_policy": "mixed_float16"})
    first = Trainer(Model.from_config(MODEL, seed=0), spec)
    first.fit(X, Y, args=FitArgs(batch_size=8, epochs=1, seed=0))
    tensors, meta = first.state()
    assert first.loss_scaler is not None and meta["loss_scale"] == first.loss_scaler.state()
    assert meta["loss_scale"]["counter"] > 0
    second = Trainer(Model.from_config(MODEL, seed=0), spec)
    second.load_state(tensors, meta)
    assert second.loss_scaler is not None and second.loss_scaler.state() == meta["loss_scale"]


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_predict_computes_in_the_half_type_as_keras(keras: ModuleType, policy: str) -> None:
    keras.utils.set_random_seed(2)
    keras.mixed_precision.set_dtype_policy(policy)
    try:
        km = keras.models.model_from_json(keras_json(MODEL))
    finally:
        keras.mixed_precision.set_dtype_policy("float32")
    model = Model.from_config(MODEL, seed=0)
    model.set_weights(km.get_weights())
    theirs = km.predict(X, batch_size=16, verbose=0).astype(np.float32)
    ours = predict(model, X, batch_size=16, dtype_policy=policy)
    one = predict_on_batch(model, X, dtype_policy=policy)
    assert ours.dtype == one.dtype == np.float32
    scale = float(np.abs(theirs).max())
    for got in (ours, one):  # within one unit of the half type's last place (measured: equal)
        np.testing.assert_allclose(got, theirs, rtol=0, atol=EPS[policy] * scale)
    full = predict(model, X, batch_size=16)  # float32 numbers are further from Keras's
    assert np.abs(full - theirs).max() > np.abs(ours - theirs).max()


def test_a_step_without_gradients_unscales_nothing_and_counts() -> None:
    scaler = LossScaler()
    assert scaler.unscale([torch.nn.Parameter(torch.ones(2))]) is True  # no .grad set
    assert scaler.counter == 1 and scaler.scale == 2.0**15
