"""Model creation as a dry run on torch's meta device, and the limits it enforces: every
layer case builds on meta with the same summary as the real build, a trillion-weight model is
refused without allocating, and each limit names the number and the limit."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from app.engine.config.errors import ConfigError
from app.engine.models.from_json import Limits
from app.engine.models.model import Model
from tests.support import scenario
from tests.support.layer_cases import all_cases


def _model(layers: list[tuple[str, dict[str, Any]]], shape: list[Any]) -> dict[str, Any]:
    entries = [{"class_name": "InputLayer", "config": {"batch_shape": shape}}]
    entries += [{"class_name": c, "config": k} for c, k in layers]
    return {"class_name": "Sequential", "config": {"layers": entries}}


CASES = all_cases()


@pytest.mark.parametrize("case", sorted(CASES))
def test_dry_run_summary_equals_the_real_one(case: str) -> None:
    layers, shape, *_ = CASES[case]
    config = _model(layers, shape)
    dry = Model.dry_run(config)
    assert all(t.is_meta for t in dry.weight_tensors().values())
    assert dry.summary() == Model.from_config(config, seed=0).summary()


def test_a_trillion_weights_are_refused_before_allocation() -> None:
    config = _model([("Dense", {"units": 1 << 20})], [None, 1 << 20])
    with pytest.raises(ConfigError, match=r"1099512676352 parameters; the limit is 50000000"):
        Model.from_config(config, seed=0)


@pytest.mark.parametrize(
    ("limits", "text"),
    [
        (Limits(params=6), "7 parameters; the limit is 6"),
        (
            Limits(tensor_elements=0),
            "shape \\[None, 1\\] has 1 elements per sample; the limit is 0",
        ),
    ],
)
def test_each_limit_names_the_number_and_the_limit(limits: Limits, text: str) -> None:
    with pytest.raises(ConfigError, match=text):
        Model.from_config(scenario.MODEL, seed=0, limits=limits)


def test_nesting_depth_is_limited() -> None:
    inner = {"class_name": "Dense", "config": {"units": 2}}
    layers = [("TimeDistributed", {"layer": {"class_name": "TimeDistributed",
                                             "config": {"layer": inner}}})]  # fmt: skip
    config = _model(layers, [None, 3, 4, 5])
    Model.from_config(config, seed=0, limits=Limits(depth=3))
    with pytest.raises(ConfigError, match="nested 3 deep; the limit is 2"):
        Model.from_config(copy.deepcopy(config), seed=0, limits=Limits(depth=2))
    with pytest.raises(ConfigError, match="3 layers, nested ones included; the limit is 2"):
        Model.from_config(copy.deepcopy(config), seed=0, limits=Limits(layers=2))


def test_the_config_layer_count_is_checked_before_building() -> None:
    config = _model([("Dense", {"units": 1})] * 5, [None, 2])
    with pytest.raises(ConfigError, match="has 6 layers; the limit is 4"):
        Model.from_config(config, seed=0, limits=Limits(layers=4))
