"""Models used as layers (Keras's nested models): a Sequential base inside a Functional model,
a Functional block inside a Sequential, forward and fit against Keras, our canonical JSON read
back by Keras, weights in Keras's order, nesting counted by the limits."""

from __future__ import annotations

import json
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from app.engine.config.errors import ConfigError
from app.engine.models.from_json import Limits
from app.engine.models.model import Model
from app.engine.training.compile import CompileSpec
from app.engine.training.fit_args import FitArgs
from app.engine.training.trainer import Trainer
from tests.support.keras_fit import assert_fit_within_drift, named_results

RNG = np.random.default_rng(11)
X = RNG.normal(size=(40, 5)).astype(np.float32)
Y = RNG.normal(size=(40, 1)).astype(np.float32)


def _sequential_in_functional(k: ModuleType) -> Any:
    base = k.Sequential([k.layers.Dense(4, activation="relu"), k.layers.Dropout(0.3),
                         k.layers.Dense(3)], name="base")  # fmt: skip
    a = k.Input((5,), name="a")
    return k.Model(a, k.layers.Dense(1, name="head")(base(a)))


def _functional_in_sequential(k: ModuleType) -> Any:
    i = k.Input((5,))
    block = k.Model(i, k.layers.Add()([k.layers.Dense(5, activation="tanh")(i), i]), name="block")
    return k.Sequential([k.Input((5,)), block, k.layers.Dense(1)])


def _shared_base(k: ModuleType) -> Any:
    base = k.Sequential([k.Input((5,)), k.layers.Dense(3, activation="tanh")], name="tower")
    a, b = k.Input((5,), name="a"), k.Input((5,), name="b")
    return k.Model([a, b], k.layers.Dense(1)(k.layers.Concatenate()([base(a), base(b)])))


BUILDERS = {"sequential_in_functional": _sequential_in_functional,
            "functional_in_sequential": _functional_in_sequential,
            "shared_base": _shared_base}  # fmt: skip


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_nested_models_match_keras(keras: ModuleType, name: str) -> None:
    km = BUILDERS[name](keras)
    ours = Model.from_config(json.loads(km.to_json()), seed=0)
    assert [w.shape for w in ours.get_weights()] == [w.shape for w in km.get_weights()]
    ours.set_weights(km.get_weights())
    xs = [X] if len(km.inputs) == 1 else [X, X[::-1].copy()]
    with torch.no_grad():
        got = ours(*[torch.as_tensor(x) for x in xs]) if len(xs) == 1 else ours(
            [torch.as_tensor(x) for x in xs])  # fmt: skip
    want = km.predict(xs[0] if len(xs) == 1 else xs, verbose=0)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, atol=1e-7)
    assert ours.summary()["total_params"] == km.count_params()
    back = keras.models.model_from_json(json.dumps(ours.get_config()))
    back.set_weights(km.get_weights())
    np.testing.assert_allclose(back.predict(xs[0] if len(xs) == 1 else xs, verbose=0), want,
                               rtol=1e-6, atol=1e-7)  # fmt: skip


def test_a_fit_through_a_nested_base_matches_keras(keras: ModuleType) -> None:
    # Dropout draws differ between Keras and here, so the nested Dropout gets rate 0.
    cfg = json.loads(_sequential_in_functional(keras).to_json())
    base = next(e for e in cfg["config"]["layers"] if e["name"] == "base")
    base["config"]["layers"][2]["config"]["rate"] = 0.0
    km = keras.models.model_from_json(json.dumps(cfg))
    km.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse", metrics=["mae"])
    ours = Model.from_config(cfg, seed=0)
    ours.set_weights(km.get_weights())
    adam = {"class_name": "Adam", "config": {"learning_rate": 0.01}}
    trainer = Trainer(ours, CompileSpec.parse({"optimizer": adam, "loss": "mse",
                                               "metrics": ["mae"]}))  # fmt: skip
    initial = km.get_weights()

    def replay(m: Any) -> dict[str, Any]:
        kh = m.fit(X, Y, batch_size=8, epochs=3, shuffle=False, verbose=0)
        return named_results(kh.history, m.get_weights())

    theirs = replay(km)
    history = trainer.fit(X, Y, args=FitArgs(batch_size=8, epochs=3, shuffle=False))
    # Every value held to a multiple of Keras's own one-ulp drift (CONTRIBUTING.md).
    assert_fit_within_drift(keras, km, named_results(history.history, ours.get_weights()), theirs,
                            initial=initial, replay=replay)  # fmt: skip


def test_nesting_counts_toward_the_limits(keras: ModuleType) -> None:
    config = json.loads(_sequential_in_functional(keras).to_json())
    with pytest.raises(ConfigError, match="nested 2 deep; the limit is 1"):
        Model.from_config(config, seed=0, limits=Limits(depth=1))
    with pytest.raises(ConfigError, match="5 layers, nested ones included; the limit is 4"):
        Model.from_config(config, seed=0, limits=Limits(layers=4))


def test_errors_inside_a_nested_model_name_the_field(keras: ModuleType) -> None:
    config = json.loads(_sequential_in_functional(keras).to_json())
    base = next(i for i, e in enumerate(config["config"]["layers"]) if e["name"] == "base")
    config["config"]["layers"][base]["config"]["layers"][1]["config"]["units"] = -3
    with pytest.raises(ConfigError) as info:
        Model.from_config(config, seed=0)
    assert info.value.loc[:5] == ("config", "layers", base, "config", "layers")
