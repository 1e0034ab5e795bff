"""How results look: one JSON document on stdout in json mode, rich tables in table mode, the
Keras-style epoch line, and errors on stderr as the server's field and reason."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from rich.table import Table

from fitapi.cli.state import State


def emit_json(st: State, document: Any) -> None:
    """The json mode's one document on stdout (plain, never wrapped or coloured)."""
    st.out.out(json.dumps(document, indent=2, sort_keys=False), highlight=False)


def emit(st: State, document: Any, *tables: Table | str) -> None:
    if st.json:
        emit_json(st, document)
    else:
        for table in tables:
            st.out.print(table)


def number(value: Any) -> str:
    """A logged value as Keras's progress bar prints it."""
    if value is None:
        return "nan"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    return f"{value:.4f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.4e}"


def ordered_logs(logs: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Training values first, then the `val_` ones, each group in the order logged."""
    items = list(logs.items())
    return [kv for kv in items if not kv[0].startswith("val_")] + [
        kv for kv in items if kv[0].startswith("val_")
    ]


def logs_text(logs: Mapping[str, Any]) -> str:
    return " - ".join(f"{k}: {number(v)}" for k, v in ordered_logs(logs))


def epoch_line(epoch: int, epochs: int | None, logs: Mapping[str, Any], attempt: int = 1) -> str:
    """`Epoch 3/10 - loss: 0.4100 - accuracy: 0.8300 - val_loss: ...` (1-based, as Keras)."""
    head = f"Epoch {epoch + 1}/{epochs}" if epochs else f"Epoch {epoch + 1}"
    if attempt > 1:
        head += f" (attempt {attempt})"
    text = logs_text(logs)
    return f"{head} - {text}" if text else head


def size(n: int | None) -> str:
    if n is None:
        return ""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(n)


def shape(dims: Sequence[Any] | None) -> str:
    if dims is None:
        return ""
    return (
        "("
        + ", ".join("None" if d is None else str(d) for d in dims)
        + ("," if len(dims) == 1 else "")
        + ")"
    )


def when(stamp: str | None) -> str:
    """An ISO timestamp to the second, as `2026-01-02 10:11:12`."""
    return (stamp or "")[:19].replace("T", " ")


def fields(title: str | None, rows: Iterable[tuple[str, Any]]) -> Table:
    """A two-column table of one object's fields (empty values left out)."""
    table = Table(title=title, show_header=False, title_justify="left", box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    for name, value in rows:
        if value not in (None, ""):
            table.add_row(name, str(value))
    return table


def listing(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    table = Table(header_style="bold")
    for i, column in enumerate(columns):
        # Ids stay whole (they are copied into the next command); other columns wrap.
        table.add_column(column, no_wrap=i == 0)
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    return table


def error_lines(status: int | None, detail: Sequence[Mapping[str, Any]]) -> list[str]:
    """One line per error the server gave: where (the field), the reason, the type code."""
    lines = []
    for item in detail or [{}]:
        loc = ".".join(str(part) for part in item.get("loc") or [])
        where = f"{loc}: " if loc else ""
        kind = item.get("type") or "error"
        code = f"{status} " if status else ""
        lines.append(f"error: {where}{item.get('msg', '')} ({code}{kind})")
    return lines
