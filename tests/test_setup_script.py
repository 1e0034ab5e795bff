"""scripts/setup.sh runs pip only when its stamp says the environment is out of date: the
dependency files, the Python version or the extras asked for changed. Run on a copy of the
project whose .venv holds a python that records pip runs instead of installing."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# setup.sh's `python -c "import torch"` is answered yes at once: torch is installed here, and
# importing it in each out-of-date run only made the test slower.
PYTHON_STUB = """#!/bin/sh
if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then
  shift 2
  echo "$*" >>"{log}"
  exit 0
fi
if [ "$1" = "-c" ] && [ "$2" = "import torch" ]; then
  exit 0
fi
exec "{python}" "$@"
"""


def _project(tmp_path: Path) -> tuple[Path, Path]:
    project = tmp_path / "project"
    (project / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "setup.sh", project / "scripts" / "setup.sh")
    shutil.copy(ROOT / "pyproject.toml", project / "pyproject.toml")
    bin_dir = project / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    log = tmp_path / "pip.log"
    stub = bin_dir / "python"
    stub.write_text(PYTHON_STUB.format(log=log, python=sys.executable))
    stub.chmod(0o755)
    (bin_dir / "activate").write_text(f'PATH="{bin_dir}:$PATH"; export PATH\n')
    return project, log


def _setup(project: Path, log: Path, *extras: str) -> list[str]:
    before = log.read_text().splitlines() if log.exists() else []
    done = subprocess.run(
        ["bash", str(project / "scripts" / "setup.sh"), *extras],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    after = log.read_text().splitlines() if log.exists() else []
    return after[len(before) :]


def test_pip_runs_only_when_the_stamp_is_out_of_date(tmp_path: Path) -> None:
    project, log = _project(tmp_path)
    first = _setup(project, log)
    assert first[-1] == "install -e ."
    assert not any("--quiet" in run and "-e" in run for run in first)  # the big install shows
    assert _setup(project, log) == []  # a second start runs no pip at all

    # extras grew; the test extras bring the client (client/, its own distribution) too
    assert _setup(project, log, "test")[-2:] == ["install -e .[test]", "install -e ./client[cli]"]
    assert _setup(project, log, "test") == []
    assert _setup(project, log) == []  # fewer extras: what is installed covers them

    pyproject = project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + "\n# changed\n")
    assert _setup(project, log)[-2] == "install -e .[test]"  # keeps the extras installed
    assert _setup(project, log) == []

    (project / "requirements.lock").write_text("numpy==2.0.0\n")  # a lock file counts too
    assert _setup(project, log)[-2] == "install -e .[test]"
    assert _setup(project, log, "test") == []

    client = project / "client" / "pyproject.toml"  # and the client's
    client.parent.mkdir()
    client.write_text("[project]\n")
    assert _setup(project, log)[-1] == "install -e ./client[cli]"
