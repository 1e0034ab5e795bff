"""The settings table of docs/operations.md, generated from the Settings class.

Each row is one field: its environment variable, its default, its bounds and its description, so
the table cannot drift from the code. `python -m app.core.settings_doc` prints the table;
`python -m app.core.settings_doc --write docs/operations.md` replaces the table between the
markers in that file. A test keeps the committed table equal to this output.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo

from app.core.config import Settings

START = "<!-- settings:start -->"
END = "<!-- settings:end -->"

_KIB = 1 << 10


def _size(value: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", _KIB)):
        if value >= scale and value % scale == 0:
            return f"{value // scale} {unit}"
    return f"{value:,}"


def _number(value: float) -> str:
    if isinstance(value, float) and not value.is_integer():
        return f"{value:g}"
    number = int(value)
    exponent = number.bit_length() - 1
    if number >= 1 << 20 and number == 1 << exponent:
        return f"2^{exponent}"
    return f"{number:,}"


def default_text(name: str, field: FieldInfo) -> str:
    """The default as an operator writes it: `unset`, `false`, 64 MiB, 2^27, 10,000, 0.25."""
    value: Any = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "empty" if not value else ", ".join(f"`{item}`" for item in value)
    if isinstance(value, int | float):
        return _size(int(value)) if name.endswith("_bytes") else _number(value)
    return f"`{value}`"


def bounds_text(field: FieldInfo) -> str:
    """The field's declared bounds, as `at least 60`, `more than 0, at most 60`; or ''."""
    words = {"ge": "at least", "gt": "more than", "le": "at most", "lt": "less than"}
    parts = [
        f"{words[key]} {_number(getattr(rule, key))}"
        for rule in field.metadata
        for key in words
        if getattr(rule, key, None) is not None
    ]
    return ", ".join(parts)


def _cell(text: str) -> str:
    return " ".join(text.replace("|", "\\|").split())


def markdown() -> str:
    """The table, between its markers, one row per setting in the class's order."""
    rows = [START, "| variable | default | allowed | meaning |", "|---|---|---|---|"]
    for name, field in Settings.model_fields.items():
        cells = [f"`{name.upper()}`", default_text(name, field), bounds_text(field)]
        rows.append("| " + " | ".join([*cells, _cell(field.description or "")]) + " |")
    rows.append(END)
    return "\n".join(rows)


def replace_table(text: str) -> str:
    """`text` with the part from START to END (markers included) replaced by `markdown()`."""
    start, end = text.index(START), text.index(END) + len(END)
    return text[:start] + markdown() + text[end:]


def main(argv: list[str]) -> int:
    if argv[:1] == ["--write"] and len(argv) == 2:
        path = Path(argv[1])
        path.write_text(replace_table(path.read_text()))
        return 0
    if argv:
        print("usage: python -m app.core.settings_doc [--write FILE]", file=sys.stderr)
        return 2
    print(markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
