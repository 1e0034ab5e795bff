"""Learning-rate schedules against Keras 3's (torch backend): the rate at many steps, bit for bit
(both compute in float32), configs both ways, and refusals that name the field."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from app.engine.config.errors import ConfigError
from app.engine.optimizers import schedules

CASES = [
    ("ExponentialDecay", {"initial_learning_rate": 0.1, "decay_steps": 3, "decay_rate": 0.7}),
    ("ExponentialDecay", {"initial_learning_rate": 0.05, "decay_steps": 4, "decay_rate": 0.5,
                          "staircase": True}),
    ("ExponentialDecay", {"initial_learning_rate": 0.3, "decay_steps": 2.5, "decay_rate": 1.05}),
    ("PiecewiseConstantDecay", {"boundaries": [3, 7, 20], "values": [0.1, 0.05, 0.01, 0.001]}),
    ("PiecewiseConstantDecay", {"boundaries": [0], "values": [0.3, 0.2], "name": "pc"}),
    ("PolynomialDecay", {"initial_learning_rate": 0.1, "decay_steps": 7}),
    ("PolynomialDecay", {"initial_learning_rate": 0.1, "decay_steps": 7, "power": 0.5,
                         "cycle": True, "end_learning_rate": 0.003}),
    ("PolynomialDecay", {"initial_learning_rate": 0.1, "decay_steps": 2.5, "power": 2.0,
                         "cycle": True}),
    ("InverseTimeDecay", {"initial_learning_rate": 0.1, "decay_steps": 3, "decay_rate": 0.3}),
    ("InverseTimeDecay", {"initial_learning_rate": 0.1, "decay_steps": 3, "decay_rate": 0.3,
                          "staircase": True}),
    ("CosineDecay", {"initial_learning_rate": 0.1, "decay_steps": 11}),
    ("CosineDecay", {"initial_learning_rate": 0.1, "decay_steps": 11, "alpha": 0.1}),
    ("CosineDecay", {"initial_learning_rate": 0.01, "decay_steps": 11, "alpha": 0.1,
                     "warmup_target": 0.1, "warmup_steps": 5}),
    ("CosineDecay", {"initial_learning_rate": 0.0, "decay_steps": 6, "warmup_target": 0.2,
                     "warmup_steps": 3.5}),
    ("CosineDecay", {"initial_learning_rate": 0.02, "decay_steps": 6, "warmup_target": 0.2}),
    ("CosineDecayRestarts", {"initial_learning_rate": 0.1, "first_decay_steps": 3}),
    ("CosineDecayRestarts", {"initial_learning_rate": 0.1, "first_decay_steps": 4, "t_mul": 1.0,
                             "m_mul": 0.5, "alpha": 0.2}),
    ("CosineDecayRestarts", {"initial_learning_rate": 0.1, "first_decay_steps": 3, "t_mul": 1.5,
                             "m_mul": 0.9, "name": "sgdr"}),
]  # fmt: skip

STEPS = [*range(0, 120), 500, 1001, 12345, 99999, 2**24 + 1]


def _keras(keras: Any, class_name: str, config: dict[str, Any]) -> Any:
    return getattr(keras.optimizers.schedules, class_name)(**config)


@pytest.mark.parametrize(("class_name", "config"), CASES)
def test_rates_match_keras_bitwise(keras, class_name, config):
    ours = schedules.get({"class_name": class_name, "config": config}, ())
    theirs = _keras(keras, class_name, config)
    for step in STEPS:
        # Keras reads the optimizer's int64 step counter.
        expected = float(theirs(torch.tensor(step, dtype=torch.int64)))
        assert ours(step) == expected, (step, ours(step), expected)


@pytest.mark.parametrize(("class_name", "config"), CASES)
def test_config_matches_keras_both_ways(keras, class_name, config):
    ours = schedules.get({"class_name": class_name, "config": config}, ())
    theirs = _keras(keras, class_name, config)
    assert ours.get_config() == theirs.get_config()
    assert schedules.serialize(ours) == keras.optimizers.schedules.serialize(theirs)
    # Keras's serialized form is accepted as it is, and reads back the same schedule.
    again = schedules.get(keras.optimizers.schedules.serialize(theirs), ())
    assert again.get_config() == ours.get_config()
    back = keras.optimizers.schedules.deserialize(schedules.serialize(ours))
    assert back.get_config() == theirs.get_config()


@pytest.mark.parametrize("cls", schedules.SCHEDULES.classes(), ids=lambda c: c.__name__)
def test_every_schedule_round_trips_with_keras_defaults(keras, cls):
    name = schedules.SCHEDULES.canonical_name(cls)
    required = {"boundaries": [2], "values": [0.1, 0.01]} if name == "PiecewiseConstantDecay" else {
        "initial_learning_rate": 0.1,
        ("first_decay_steps" if name == "CosineDecayRestarts" else "decay_steps"): 5,
        **({"decay_rate": 0.5} if "decay_rate" in cls.config_keys() else {}),
    }  # fmt: skip
    ours = cls.from_config(required, ())
    assert ours.get_config() == _keras(keras, name, required).get_config()
    assert cls.from_config(ours.get_config(), ()).get_config() == ours.get_config()
    assert tuple(ours.get_config()) == cls.config_keys()


@pytest.mark.parametrize(
    ("class_name", "config", "key", "message"),
    [("ExponentialDecay", {"decay_steps": 3, "decay_rate": 0.5}, "initial_learning_rate",
      "required"),
     ("ExponentialDecay", {"initial_learning_rate": 0.1, "decay_steps": 0, "decay_rate": 0.5},
      "decay_steps", "> 0"),
     ("ExponentialDecay", {"initial_learning_rate": 0.1, "decay_steps": 2, "decay_rate": -1.0},
      "decay_rate", ">= 0"),
     ("ExponentialDecay", {"initial_learning_rate": "a", "decay_steps": 2, "decay_rate": 0.5},
      "initial_learning_rate", "number"),
     ("ExponentialDecay", {"initial_learning_rate": 0.1, "decay_steps": 2, "decay_rate": 0.5,
                           "staircase": "yes"}, "staircase", "true or false"),
     ("ExponentialDecay", {"initial_learning_rate": 0.1, "decay_steps": 2, "decay_rate": 0.5,
                           "decay": 0.1}, "decay", "unknown"),
     ("InverseTimeDecay", {"initial_learning_rate": -0.1, "decay_steps": 2, "decay_rate": 0.5},
      "initial_learning_rate", ">= 0"),
     ("PolynomialDecay", {"initial_learning_rate": 0.1, "decay_steps": float("inf")},
      "decay_steps", "finite"),
     ("PolynomialDecay", {"initial_learning_rate": 0.1, "decay_steps": 3, "power": -1.0},
      "power", ">= 0"),
     ("PolynomialDecay", {"initial_learning_rate": 0.1, "decay_steps": 3, "cycle": 1},
      "cycle", "true or false"),
     ("CosineDecay", {"initial_learning_rate": 0.1, "decay_steps": 3, "alpha": 2.0},
      "alpha", "<= 1"),
     ("CosineDecay", {"initial_learning_rate": 0.1, "decay_steps": 3, "warmup_target": -1.0},
      "warmup_target", ">= 0"),
     ("CosineDecay", {"initial_learning_rate": 0.1, "decay_steps": 3, "warmup_steps": -1},
      "warmup_steps", ">= 0"),
     ("CosineDecayRestarts", {"initial_learning_rate": 0.1}, "first_decay_steps", "required"),
     ("CosineDecayRestarts", {"initial_learning_rate": 0.1, "first_decay_steps": 3,
                              "t_mul": 0.5}, "t_mul", ">= 1"),
     ("CosineDecayRestarts", {"initial_learning_rate": 0.1, "first_decay_steps": 3,
                              "name": 3}, "name", "string"),
     ("PiecewiseConstantDecay", {"values": [0.1]}, "boundaries", "required"),
     ("PiecewiseConstantDecay", {"boundaries": 3, "values": [0.1]}, "boundaries", "list"),
     ("PiecewiseConstantDecay", {"boundaries": [1, 2], "values": [0.1, 0.2]}, "values",
      "one more"),
     ("PiecewiseConstantDecay", {"boundaries": list(range(2000)), "values": [0.1] * 2001},
      "boundaries", "at most")],
)  # fmt: skip
def test_bad_configs_name_the_field(class_name, config, key, message):
    with pytest.raises(ConfigError) as err:
        schedules.get({"class_name": class_name, "config": config}, ("lr",))
    assert err.value.loc == ("lr", "config", key)
    assert message in err.value.message


@pytest.mark.parametrize(
    ("config", "loc", "message"),
    [({"boundaries": [1, 2.5], "values": [0.1, 0.2, 0.3]}, ("boundaries", 1), "integer"),
     ({"boundaries": [3, 3], "values": [0.1, 0.2, 0.3]}, ("boundaries", 1), "increasing"),
     ({"boundaries": [3], "values": [0.1, "x"]}, ("values", 1), "number"),
     ({"boundaries": [3], "values": [0.1, float("nan")]}, ("values", 1), "finite")],
)  # fmt: skip
def test_bad_piecewise_entries_name_their_index(config, loc, message):
    with pytest.raises(ConfigError) as err:
        schedules.get({"class_name": "PiecewiseConstantDecay", "config": config}, ("lr",))
    assert err.value.loc == ("lr", "config", *loc)
    assert message in err.value.message


@pytest.mark.parametrize(
    ("identifier", "loc"),
    [({"class_name": "StepDecay", "config": {}}, ("lr", "class_name")),
     ({"class_name": "exponentialdecay", "config": {}}, ("lr", "class_name")),
     ({"module": "my.schedules", "class_name": "ExponentialDecay"}, ("lr", "module")),
     ({"class_name": "CosineDecay", "config": [1]}, ("lr", "config")),
     (3, ("lr",))],
)  # fmt: skip
def test_bad_identifiers(identifier, loc):
    with pytest.raises(ConfigError) as err:
        schedules.get(identifier, ("lr",))
    assert err.value.loc == loc


def test_whole_numbers_keep_their_type_and_floats_theirs():
    config = {"initial_learning_rate": 1, "decay_steps": 10, "decay_rate": 0.5}
    ours = schedules.get({"class_name": "ExponentialDecay", "config": config}, ())
    assert ours.get_config()["decay_steps"] == 10
    assert isinstance(ours.get_config()["decay_steps"], int)
    assert ours(10) == 0.5
