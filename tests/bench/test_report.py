"""The one-command benchmark table: goals read, rows rendered, the README section replaced, a
failing benchmark reported in the table (no timing is asserted)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import run_all
from bench.report import Row, machine, markdown, verdict


def _row(ratio: float | None, goal: str) -> Row:
    return Row(benchmark="b", ours="1", reference="2", ratio=ratio, goal=goal)


@pytest.mark.parametrize(
    ("ratio", "goal", "expected"),
    [(0.96, ">= 0.95x", "met"), (0.9, ">= 0.95x", "missed"), (1.3, "<= 1.3x", "met"),
     (1.31, "<= 1.3x", "missed"), (None, ">= 1x", ""), (2.0, "", "")],
)  # fmt: skip
def test_verdict_reads_the_goal(ratio: float | None, goal: str, expected: str) -> None:
    assert verdict(_row(ratio, goal)) == expected


def test_the_table_has_a_line_per_row_and_the_notes_below() -> None:
    rows = [_row(1.0, ">= 0.95x"), {**_row(None, ""), "note": "why"}]
    text = markdown(rows)  # type: ignore[arg-type]
    assert text.splitlines()[2] == "| b | 1 | 2 | 1.00x | >= 0.95x | met |"
    assert text.splitlines()[-1] == "- b: why"
    assert "cores" in machine()


def test_write_replaces_only_the_marked_section(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{run_all.START}\nold\n{run_all.END}\n\nafter\n")
    run_all.write(readme, f"{run_all.START}\nnew\n{run_all.END}")
    assert readme.read_text() == f"# x\n\n{run_all.START}\nnew\n{run_all.END}\n\nafter\n"
    unmarked = tmp_path / "unmarked.md"
    unmarked.write_text("# x\n")
    with pytest.raises(SystemExit):
        run_all.write(unmarked, "")


def test_a_failing_benchmark_is_a_row_and_the_rest_still_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(run_all.BENCHES, "broken", "bench.no_such_module")
    rows = run_all.run(["broken"], quick=True)
    assert rows == [Row(benchmark="broken", ours="failed: ModuleNotFoundError", reference="",
                        ratio=None, goal="")]  # fmt: skip
