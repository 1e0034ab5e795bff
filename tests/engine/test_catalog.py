"""The README's list of supported names is the registries' own."""

from __future__ import annotations

from pathlib import Path

from app.engine.catalog import END, START, markdown

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_lists_exactly_what_the_registries_hold() -> None:
    text = README.read_text()
    section = text[text.index(START) : text.index(END) + len(END)]
    assert section == markdown(), "run `python -m app.engine.catalog` and paste it into README"
