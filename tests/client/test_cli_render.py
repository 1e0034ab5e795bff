"""The command line's rendering, in process: Keras-style numbers and epoch lines, and the
follower printing one line per epoch whatever progress events came before."""

from __future__ import annotations

import io
from typing import Any

from fitapi.cli import render
from fitapi.cli.follow import EpochBars
from rich.console import Console


def test_numbers_and_epoch_lines_read_as_keras_prints_them() -> None:
    assert render.number(0.123456) == "0.1235"
    assert render.number(0.0001234) == "1.2340e-04"
    assert render.number(None) == "nan"
    line = render.epoch_line(2, 10, {"val_loss": 0.5, "loss": 0.25, "accuracy": 1.0})
    assert line == "Epoch 3/10 - loss: 0.2500 - accuracy: 1.0000 - val_loss: 0.5000"
    assert render.epoch_line(0, None, {}, attempt=2) == "Epoch 1 (attempt 2)"
    assert render.shape([None, 1]) == "(None, 1)" and render.shape([5]) == "(5,)"


def test_error_lines_name_the_field_and_reason() -> None:
    detail = [{"loc": ["body", "compile", "loss"], "msg": "unknown loss", "type": "value_error"}]
    assert render.error_lines(422, detail) == [
        "error: body.compile.loss: unknown loss (422 value_error)"
    ]


def run_bars(terminal: bool, events: list[tuple[str, dict[str, Any]]]) -> str:
    buffer = io.StringIO()
    console = Console(file=buffer, force_terminal=terminal, width=100)
    with EpochBars(console, console, 2) as bars:
        for kind, data in events:
            (bars.on_progress if kind == "progress" else bars.on_epoch)(data)
    return buffer.getvalue()


EVENTS = [
    ("progress", {"epoch": 0, "batch": 3, "steps": 8, "epochs": 2, "logs": {"loss": 0.9}}),
    ("progress", {"epoch": 0, "batch": 7, "steps": 8, "epochs": 2, "logs": {"loss": 0.8}}),
    ("epoch", {"epoch": 0, "logs": {"loss": 0.8, "val_loss": 0.7}, "attempt": 1}),
    ("epoch", {"epoch": 1, "logs": {"loss": 0.6, "val_loss": 0.5}, "attempt": 1}),
]


def test_captured_output_is_one_line_per_epoch() -> None:
    assert run_bars(False, EVENTS).splitlines() == [
        "Epoch 1/2 - loss: 0.8000 - val_loss: 0.7000",
        "Epoch 2/2 - loss: 0.6000 - val_loss: 0.5000",
    ]


def test_on_a_terminal_the_bars_are_drawn_and_cleared() -> None:
    text = run_bars(True, EVENTS)
    assert "Epoch 1/2 - loss: 0.8000 - val_loss: 0.7000" in text
    assert "Epoch 2/2 - loss: 0.6000 - val_loss: 0.5000" in text
