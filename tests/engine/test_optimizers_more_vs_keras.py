"""AdamW, Adagrad, Adadelta, Adamax, Nadam, Lion, Ftrl, Adafactor and Lamb against Keras 3 (torch
backend): step by step on raw tensors (ranks 1 to 3, a missing gradient, a rate change mid-run),
then in fit (every History value and the final weights), and every registered optimizer with
each clipping option and weight decay; configs, names, refusals and bit-exact resume."""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from app.engine import optimizers
from app.engine.config.errors import ConfigError
from app.engine.models.model import Model
from app.engine.training.compile import CompileSpec
from app.engine.training.fit_args import FitArgs
from app.engine.training.trainer import Trainer
from tests.engine.test_optimizers import (
    _keras_config,
    _params,
    check_cuda_step,
    check_resume_bit_exact,
    check_steps_match_keras,
)
from tests.support.keras_fit import assert_same_fit, fit_results, sequential
from tests.support.keras_json import keras_json
from tests.support.tolerance import keras_drift

RTOL, ATOL = 1e-6, 1e-7

FTRL_ALL = {"learning_rate": 0.1, "learning_rate_power": -0.7, "initial_accumulator_value": 0.3,
            "l1_regularization_strength": 0.01, "l2_regularization_strength": 0.02,
            "l2_shrinkage_regularization_strength": 0.05, "beta": 0.5}  # fmt: skip

# Defaults and non-default hyperparameters for each; weights of rank 1, 2 and 3 in the step test
# run both of Adafactor's paths (factored from rank 2).
CONFIGS = [
    ("AdamW", {}),
    ("AdamW", {"learning_rate": 0.01, "weight_decay": 0.05, "amsgrad": True}),
    ("AdamW", {"beta_1": 0.8, "beta_2": 0.99, "epsilon": 1e-5, "weight_decay": 0}),
    ("Adagrad", {}),
    ("Adagrad", {"learning_rate": 0.05, "initial_accumulator_value": 0.5, "epsilon": 1e-3}),
    ("Adagrad", {"initial_accumulator_value": 0}),
    ("Adadelta", {}),
    ("Adadelta", {"learning_rate": 1, "rho": 0.8, "epsilon": 1e-5}),
    ("Adamax", {}),
    ("Adamax", {"learning_rate": 0.01, "beta_1": 0.8, "beta_2": 0.95, "epsilon": 1e-5}),
    ("Nadam", {}),
    ("Nadam", {"learning_rate": 0.01, "beta_1": 0.85, "beta_2": 0.99, "epsilon": 1e-5}),
    ("Lion", {}),
    ("Lion", {"learning_rate": 0.003, "beta_1": 1, "beta_2": 0.9}),
    ("Lion", {"beta_1": 0.5, "beta_2": 0.5}),
    ("Ftrl", {}),
    ("Ftrl", FTRL_ALL),
    ("Ftrl", {"learning_rate_power": 0, "initial_accumulator_value": 0, "beta": 0.2}),
    ("Adafactor", {}),
    ("Adafactor", {"learning_rate": 0.5}),  # relative_step caps the rate at 1/sqrt(t)
    ("Adafactor", {"learning_rate": 0.05, "relative_step": False, "beta_2_decay": -0.5,
                   "epsilon_1": 1e-20, "epsilon_2": 0.01, "clip_threshold": 0.5}),
    ("Lamb", {}),
    ("Lamb", {"learning_rate": 0.05, "beta_1": 0.8, "beta_2": 0.99, "epsilon": 1e-5}),
]  # fmt: skip

NEW = sorted({name for name, _ in CONFIGS})


def _keras_optimizer(keras: ModuleType, class_name: str, config: dict[str, Any]) -> Any:
    # Not keras.optimizers.get: it has no entry for Lamb.
    return getattr(keras.optimizers, class_name)(**_keras_config(config))


@pytest.mark.filterwarnings("ignore:Gradients do not exist")
@pytest.mark.parametrize(("class_name", "config"), CONFIGS)
def test_matches_keras_step_by_step(keras, class_name, config):
    check_steps_match_keras(keras, class_name, config, steps=8)


RNG = np.random.default_rng(3)
X = RNG.normal(size=(60, 4)).astype(np.float32)
Y = np.eye(3, dtype=np.float32)[RNG.integers(0, 3, size=60)]
MODEL = sequential(
    [
        ("Dense", {"units": 6, "activation": "tanh"}),
        ("Dense", {"units": 3, "activation": "softmax"}),
    ],
    [None, 4],
)


def _fit_both(keras: ModuleType, class_name: str, config: dict[str, Any]) -> None:
    """Fit the same model from the same weights here and in Keras; compare History and weights."""
    compile_cfg = {"optimizer": {"class_name": class_name, "config": config},
                   "loss": "categorical_crossentropy", "metrics": ["accuracy"]}  # fmt: skip
    keras.utils.set_random_seed(0)  # the same initial weights whatever ran before
    km = keras.models.model_from_json(keras_json(MODEL))
    km.compile(optimizer=_keras_optimizer(keras, class_name, config),
               loss="categorical_crossentropy", metrics=["accuracy"])  # fmt: skip
    model = Model.from_config(MODEL, seed=0)
    model.set_weights(km.get_weights())
    trainer = Trainer(model, CompileSpec.parse(compile_cfg), device=None)
    initial = km.get_weights()
    kh = km.fit(X, Y, batch_size=16, epochs=3, shuffle=False, validation_split=0.25, verbose=0)
    args = FitArgs(batch_size=16, epochs=3, shuffle=False, validation_split=0.25)
    history = trainer.fit(X, Y, args=args)

    def keras_fit(weights: list[np.ndarray]) -> dict[str, Any]:
        other = keras.models.model_from_json(keras_json(MODEL))
        other.set_weights(weights)
        other.compile(optimizer=_keras_optimizer(keras, class_name, config),
                      loss="categorical_crossentropy", metrics=["accuracy"])  # fmt: skip
        h = other.fit(X, Y, batch_size=16, epochs=3, shuffle=False, validation_split=0.25,
                      verbose=0)  # fmt: skip
        return fit_results(h.history, other)

    # Nine steps at rates up to 0.5: each value held to a multiple of Keras's own one-ulp drift.
    drift = keras_drift(keras_fit, initial, baseline=fit_results(kh.history, km))
    assert isinstance(drift, dict)
    assert_same_fit(history.history, kh.history, trainer, km, drift=drift)
    assert trainer.optimizer.iterations == int(km.optimizer.iterations) == 9


@pytest.mark.parametrize(("class_name", "config"), CONFIGS)
def test_fit_matches_keras(keras, class_name, config):
    _fit_both(keras, class_name, config)


# Small limits, so that clipping bites on this model's gradients.
CLIPS = [{"clipnorm": 0.1}, {"global_clipnorm": 0.2}, {"clipvalue": 0.02}, {}]


@pytest.mark.parametrize("clip", CLIPS, ids=lambda c: next(iter(c), "no_clip"))
@pytest.mark.parametrize("cls", optimizers.OPTIMIZERS.classes(), ids=lambda c: c.__name__)
def test_fit_with_clipping_and_weight_decay_matches_keras(keras, cls, clip):
    _fit_both(keras, cls.__name__, {"learning_rate": 0.02, "weight_decay": 0.1, **clip})


@pytest.mark.parametrize(("class_name", "config"), CONFIGS)
def test_config_matches_keras(keras, class_name, config):
    ours = optimizers.get({"class_name": class_name, "config": config}, ())
    theirs = _keras_optimizer(keras, class_name, config).get_config()
    # Keras numbers its default names per process (adam_w, adam_w_1, ...).
    assert theirs["name"].startswith(ours.get_config()["name"])
    assert {**ours.get_config(), "name": None} == {**theirs, "name": None}
    # Keras's full config (all base keys) is accepted and round-trips exactly.
    assert type(ours).from_config(theirs, ()).get_config() == theirs


@pytest.mark.parametrize("name", NEW)
def test_default_config_is_keras_s(keras, name):
    ours = optimizers.get({"class_name": name}, ()).get_config()
    theirs = getattr(keras.optimizers, name)().get_config()
    assert list(ours) == list(theirs)  # the same keys, in Keras's order
    assert {**ours, "name": None} == {**theirs, "name": None}


@pytest.mark.parametrize("name", [n for n in NEW if n != "Lamb"])
def test_string_ids_in_any_case(keras, name):
    for identifier in (name, name.lower(), name.upper()):
        ours = optimizers.get(identifier, ())
        assert type(ours).__name__ == name
        theirs = keras.optimizers.get(identifier).get_config()
        assert theirs["name"].startswith(ours.get_config()["name"])
    assert type(optimizers.get({"class_name": name.upper()}, ())).__name__ == name


@pytest.mark.parametrize("identifier", ["lamb", "Lamb", "LAMB"])
def test_lamb_has_no_string_id(keras, identifier):
    with pytest.raises(ValueError):
        keras.optimizers.get(identifier)
    with pytest.raises(ConfigError) as err:
        optimizers.get(identifier, ("compile", "optimizer"))
    assert err.value.loc == ("compile", "optimizer")
    assert '{"class_name": "Lamb"}' in err.value.message
    assert type(optimizers.get({"class_name": identifier}, ())) is optimizers.Lamb


# (class name, config, field, part of the message, whether Keras refuses it too)
BAD = [
    ("AdamW", {"weight_decay": None}, "weight_decay", "got None", True),
    ("AdamW", {"weight_decay": -0.1}, "weight_decay", ">= 0", False),
    ("AdamW", {"beta_1": 1.0}, "beta_1", "< 1", False),
    ("Adagrad", {"initial_accumulator_value": -0.1}, "initial_accumulator_value", ">= 0", False),
    ("Adagrad", {"epsilon": "small"}, "epsilon", "number", False),
    ("Adadelta", {"rho": 1.5}, "rho", "<= 1", False),
    ("Adadelta", {"epsilon": -1e-7}, "epsilon", ">= 0", False),
    ("Adamax", {"beta_1": 1.0}, "beta_1", "< 1", False),
    ("Adamax", {"beta_2": 1.5}, "beta_2", "<= 1", False),
    ("Nadam", {"beta_2": 1.0}, "beta_2", "< 1", False),
    ("Nadam", {"beta_1": -0.1}, "beta_1", ">= 0", False),
    ("Lion", {"beta_1": 0.0}, "beta_1", "> 0", True),
    ("Lion", {"beta_1": 1.5}, "beta_1", "<= 1", True),
    ("Lion", {"beta_2": -0.5}, "beta_2", ">= 0", False),
    ("Ftrl", {"learning_rate_power": 0.5}, "learning_rate_power", "<= 0", True),
    ("Ftrl", {"initial_accumulator_value": -0.1}, "initial_accumulator_value", ">= 0", True),
    ("Ftrl", {"l1_regularization_strength": -1.0}, "l1_regularization_strength", ">= 0", True),
    ("Ftrl", {"l2_regularization_strength": -1.0}, "l2_regularization_strength", ">= 0", True),
    ("Ftrl", {"l2_shrinkage_regularization_strength": -1.0},
     "l2_shrinkage_regularization_strength", ">= 0", True),
    ("Ftrl", {"beta": -1.0}, "beta", ">= 0", False),
    ("Adafactor", {"beta_2_decay": 0.5}, "beta_2_decay", "<= 0", False),
    ("Adafactor", {"epsilon_1": -1.0}, "epsilon_1", ">= 0", False),
    ("Adafactor", {"clip_threshold": 0.0}, "clip_threshold", "> 0", False),
    ("Adafactor", {"relative_step": "yes"}, "relative_step", "true or false", False),
    ("Lamb", {"beta_2": 1.0}, "beta_2", "< 1", False),
    ("Lamb", {"amsgrad": True}, "amsgrad", "unknown", True),
    ("Adamax", {"learning_rate": 0}, "learning_rate", "> 0", False),
]  # fmt: skip


@pytest.mark.parametrize(("class_name", "config", "key", "message", "keras_refuses"), BAD)
def test_bad_configs_name_the_field(keras, class_name, config, key, message, keras_refuses):
    with pytest.raises(ConfigError) as err:
        optimizers.get({"class_name": class_name, "config": config}, ("compile", "optimizer"))
    assert err.value.loc == ("compile", "optimizer", "config", key)
    assert message in err.value.message
    if keras_refuses:  # the others Keras takes, and then divides by zero or steps uphill
        with pytest.raises((ValueError, TypeError)):
            getattr(keras.optimizers, class_name)(**config)


def test_adamw_constructed_directly_needs_a_weight_decay():
    assert optimizers.AdamW().weight_decay == 0.004
    with pytest.raises(ValueError):
        optimizers.AdamW(weight_decay=None)


@pytest.mark.parametrize(("class_name", "config"), CONFIGS)
def test_resume_is_bit_exact(class_name, config):
    check_resume_bit_exact({"class_name": class_name, "config": config})


def test_state_holds_nadam_s_product_and_adafactor_s_factors():
    nadam = optimizers.get("nadam", ())
    nadam.build(_params())
    assert "nadam.u_product" in nadam.state_dict()[0]
    adafactor = optimizers.get("adafactor", ())
    params = _params()
    adafactor.build(params)
    tensors = adafactor.state_dict()[0]
    for i, p in enumerate(params):
        rank2 = p.dim() >= 2
        assert tensors[f"adafactor.r.{i}"].shape == (p.shape[:-1] if rank2 else ())
        assert tensors[f"adafactor.c.{i}"].shape == ((*p.shape[:-2], p.shape[-1]) if rank2 else ())
        assert tensors[f"adafactor.velocity.{i}"].shape == p.shape


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize(("class_name", "config"), CONFIGS)
def test_step_never_synchronises_on_cuda(class_name, config):
    check_cuda_step({"class_name": class_name, "config": config})
