"""ActivityRegularization, AlphaDropout and SpatialDropout3D beyond inference: AlphaDropout's
training arithmetic against Keras's given the same uniform draw, whole-channel drops, seeded
randomness, penalties and configs that Keras loads back; and, on CUDA, regularized and
constrained training steps that never wait for the host."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from app.engine.models.model import Model
from app.engine.training.compile import CompileSpec
from app.engine.training.fit_args import FitArgs
from app.engine.training.trainer import Trainer
from tests.support.keras_json import keras_json


def _model(spec: list[tuple[str, dict[str, Any]]], shape: list[Any]) -> dict[str, Any]:
    layers = [{"class_name": "InputLayer", "config": {"batch_shape": shape}}]
    layers += [{"class_name": c, "config": cfg} for c, cfg in spec]
    return {"class_name": "Sequential", "config": {"name": "m", "layers": layers}}


@pytest.mark.parametrize(
    ("config", "shape"),
    [
        ({"rate": 0.3}, [6, 5]),
        ({"rate": 0.05, "noise_shape": [None, 1, 5]}, [6, 3, 5]),
        ({"rate": 0.6, "noise_shape": [1, None]}, [6, 5]),
    ],
)
def test_alpha_dropout_computes_as_keras_for_the_same_draw(
    keras: ModuleType, monkeypatch: pytest.MonkeyPatch, config: dict[str, Any], shape: list[int]
) -> None:
    from keras.src.backend.torch import random as keras_random

    model = Model.from_config(_model([("AlphaDropout", config)], [None, *shape[1:]]), seed=0)
    model.set_generator(torch.Generator().manual_seed(4))
    x = torch.as_tensor(np.random.default_rng(2).normal(size=shape).astype(np.float32))
    ours = model(x, training=True)
    # Keras draws its uniform noise through ops.random.uniform: give it the draw ours made.
    replay = torch.Generator().manual_seed(4)

    def uniform(noise_shape: Any, **_: Any) -> torch.Tensor:
        return torch.empty(tuple(noise_shape)).uniform_(generator=replay)

    monkeypatch.setattr(keras_random, "uniform", uniform)
    layer = keras.layers.AlphaDropout(**config)
    theirs = layer(x, training=True)
    np.testing.assert_array_max_ulp(ours.numpy(), theirs.detach().numpy(), maxulp=1)
    assert torch.equal(model(x, training=False), x)


def test_alpha_dropout_keeps_a_unit_normal_input_unit_normal() -> None:
    model = Model.from_config(_model([("AlphaDropout", {"rate": 0.3})], [None, 200]), seed=0)
    model.set_generator(torch.Generator().manual_seed(0))
    x = torch.randn((500, 200), generator=torch.Generator().manual_seed(1))
    out = model(x, training=True)
    assert abs(out.mean().item()) < 0.01 and abs(out.std().item() - 1.0) < 0.01
    saturated = -1.6732632423543772 * 1.0507009873554805
    a = ((1 - 0.3) * (1 + 0.3 * saturated**2)) ** -0.5
    dropped = torch.isclose(out, torch.full((), a * saturated - a * saturated * 0.3))
    assert abs(dropped.float().mean().item() - 0.3) < 0.01


@pytest.mark.parametrize(
    ("config", "shape", "channel"),
    [({"rate": 0.3}, [3, 2, 4, 20], 4), ({"rate": 0.3, "data_format": "channels_first"},
                                          [20, 3, 2, 4], 1)],
)  # fmt: skip
def test_spatial_dropout_3d_drops_whole_channels(
    config: dict[str, Any], shape: list[int], channel: int
) -> None:
    def train(seed: int) -> torch.Tensor:
        model = Model.from_config(_model([("SpatialDropout3D", config)], [None, *shape]), seed=0)
        model.set_generator(torch.Generator().manual_seed(seed))
        return model(torch.ones((300, *shape)), training=True)

    out = train(3)
    assert set(out.unique().tolist()) <= {0.0, (torch.ones(()) / 0.7).item()}
    per_channel = out.movedim(channel, 1).reshape(out.shape[0], out.shape[channel], -1)
    assert torch.equal(per_channel.amin(dim=2), per_channel.amax(dim=2))  # one draw per channel
    assert abs((out == 0).float().mean().item() - 0.3) < 0.02
    assert torch.equal(out, train(3)) and not torch.equal(out, train(4))


def test_activity_regularization_adds_keras_penalty(keras: ModuleType) -> None:
    config = _model([("Dense", {"units": 4}), ("ActivityRegularization", {"l1": 0.1, "l2": 0.3})],
                    [None, 3])  # fmt: skip
    km = keras.models.model_from_json(keras_json(config))
    ours = Model.from_config(config, seed=0)
    ours.set_weights(km.get_weights())
    x = np.random.default_rng(0).normal(size=(7, 3)).astype(np.float32)
    ours(torch.as_tensor(x))
    km(x)
    (got,) = ours.added_losses()
    (want,) = km.losses
    np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-6)


def test_keras_loads_our_canonical_configs(keras: ModuleType) -> None:
    spec = [
        ("ActivityRegularization", {"l1": 0.5}),
        ("Reshape", {"target_shape": [2, 2, 2, 3]}),
        ("SpatialDropout3D", {"rate": 0.2, "data_format": "channels_first"}),
        ("AlphaDropout", {"rate": 0.1, "noise_shape": [None, 1, 2, 2, 3], "seed": 3}),
        ("Flatten", {"activity_regularizer": "l2"}),
        ("Dense", {"units": 2, "kernel_regularizer": "orthogonal_regularizer",
                   "bias_constraint": {"class_name": "MinMaxNorm", "config": {"rate": 0.5}}}),
    ]  # fmt: skip
    ours = Model.from_config(_model(spec, [None, 24]), seed=0).get_config()
    km = keras.models.model_from_json(json.dumps(ours))
    theirs = json.loads(km.to_json())
    assert Model.from_config(theirs, seed=0).get_config() == ours


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_regularized_training_steps_do_not_sync_with_the_host() -> None:
    from app.engine.arrays.checks import Arrays

    spec = [
        ("Dense", {"units": 8, "activation": "relu", "kernel_regularizer": "l1l2",
                   "bias_regularizer": "l2", "activity_regularizer": "l1",
                   "kernel_constraint": "max_norm", "bias_constraint": "non_neg"}),
        ("ActivityRegularization", {"l2": 0.1}),
        ("Dense", {"units": 3, "kernel_regularizer": "orthogonal_regularizer",
                   "kernel_constraint": "unit_norm", "activation": "softmax"}),
    ]  # fmt: skip
    compile_cfg = {"optimizer": "adam", "loss": "sparse_categorical_crossentropy"}
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 5)).astype(np.float32)
    y = rng.integers(0, 3, size=(256,)).astype(np.float32)

    def fit(device: str) -> tuple[Trainer, dict[str, list[float]]]:
        trainer = Trainer(Model.from_config(_model(spec, [None, 5]), seed=1),
                          CompileSpec.parse(compile_cfg), device=torch.device(device))  # fmt: skip
        history = trainer.fit(x, y, args=FitArgs(batch_size=64, epochs=3, shuffle=False))
        return trainer, history.history

    cuda, cuda_history = fit("cuda")  # also warms up: lazy state, kernels
    _, cpu_history = fit("cpu")
    np.testing.assert_allclose(cuda_history["loss"], cpu_history["loss"], rtol=1e-5)
    plan = cuda.plan_fit(x, y, args=FitArgs(batch_size=64, epochs=1))
    data = Arrays.from_numpy(plan.train, torch.device("cuda"))
    params = cuda.model.trainable_parameters()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for lo in range(0, data.size, 64):
            cuda.train_step(data.take(slice(lo, lo + 64)), params)
    finally:
        torch.cuda.set_sync_debug_mode("default")
