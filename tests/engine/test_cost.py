"""The per-sample cost estimate, counted by hand: every tensor of the graph, plus what recurrent
and attention layers hold beyond their outputs, nested models included; open dimensions scale
with what a request sends."""

from __future__ import annotations

from typing import Any

from app.engine.models.cost import sample_cost
from app.engine.models.model import Model


def _seq(shape: list[Any], *layers: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    entries = [{"class_name": "InputLayer", "config": {"batch_shape": shape}}]
    entries += [{"class_name": name, "config": config} for name, config in layers]
    return {"class_name": "Sequential", "config": {"layers": entries}}


def test_every_tensor_counts() -> None:
    cost = sample_cost(Model.dry_run(_seq([None, 1024], ("RepeatVector", {"n": 65536}))))
    assert cost.linear == 1024 + 65536 * 1024 and cost.quadratic == 0
    assert cost.outputs == 65536 * 1024 and cost.inputs == ((1024, False),)
    assert cost.elements() == cost.linear


def test_recurrent_gates_and_states() -> None:
    # 10 steps of 8 units: the input terms and the gate sums (4 gates each), and h and c.
    cost = sample_cost(Model.dry_run(_seq([None, 10, 4], ("LSTM", {"units": 8}))))
    assert cost.linear == 40 + 8 + 10 * 8 * (2 * 4 + 2)
    both = sample_cost(Model.dry_run(_seq([None, 10, 4], ("Bidirectional", {
        "layer": {"class_name": "GRU", "config": {"units": 8}}}))))  # fmt: skip
    assert both.linear == 40 + 16 + 2 * 10 * 8 * (2 * 3 + 1)


def test_attention_scores_grow_with_the_square_of_the_length() -> None:
    graph = {"class_name": "Functional", "config": {
        "name": "mha", "input_layers": [["q", 0, 0]], "output_layers": [["att", 0, 0]],
        "layers": [
            {"class_name": "InputLayer", "name": "q", "inbound_nodes": [],
             "config": {"batch_shape": [None, 16, 4], "name": "q"}},
            {"class_name": "MultiHeadAttention", "name": "att",
             "config": {"name": "att", "num_heads": 2, "key_dim": 3},
             "inbound_nodes": [{"args": [{"class_name": "__keras_tensor__",
                                          "config": {"keras_history": ["q", 0, 0]}}],
                                "kwargs": {"value": {"class_name": "__keras_tensor__",
                                                     "config": {"keras_history": ["q", 0, 0]}}}}]},
        ]}}  # fmt: skip
    cost = sample_cost(Model.dry_run(graph))
    assert cost.quadratic == 2 * 2 * 16 * 16  # scores and softmax per head
    assert cost.linear == 64 + 64 + 2 * (3 * 32 + 3 * 32)
    assert cost.elements(2.0) == 2 * cost.linear + 4 * cost.quadratic


def test_nested_models_count_their_own_tensors() -> None:
    inner = _seq([None, 4], ("Dense", {"units": 100}), ("Dense", {"units": 2}))
    outer = _seq([None, 4], (inner["class_name"], inner["config"]))
    assert sample_cost(Model.dry_run(outer)).linear == 4 + 2 + (4 + 100 + 2)


def test_open_dimensions_scale_with_the_request() -> None:
    cost = sample_cost(Model.dry_run(_seq([None, None, 4], ("Dense", {"units": 8}))))
    assert cost.inputs == ((4, True),) and cost.linear == 12
    assert cost.scaled([400]) == 100.0 and cost.elements(100.0) == 1200
    fixed = sample_cost(Model.dry_run(_seq([None, 4], ("Dense", {"units": 8}))))
    assert fixed.scaled([400]) == 1.0  # fixed shapes: the engine refuses other sizes itself
