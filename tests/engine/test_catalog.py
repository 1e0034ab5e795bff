"""The engine README's list of supported names is the registries' own."""

from __future__ import annotations

from pathlib import Path

from app.engine.catalog import END, START, markdown

ENGINE_README = Path(__file__).resolve().parents[2] / "app" / "engine" / "README.md"


def test_engine_readme_lists_exactly_what_the_registries_hold() -> None:
    text = ENGINE_README.read_text()
    section = text[text.index(START) : text.index(END) + len(END)]
    assert section == markdown(), (
        "run `python -m app.engine.catalog` and paste it into app/engine/README.md"
    )
