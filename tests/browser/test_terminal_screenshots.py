"""The README's pictures of the Python client and the `fitapi` command: each is run for real
against an embedded server, its terminal output is checked, then drawn as a terminal page that
Chromium (offline) renders to docs/screenshots/client.png and cli.png."""

from __future__ import annotations

import html
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.browser.conftest import OfflinePage
from tests.client.servers import embedded_server
from tests.e2e.harness import ROOT
from tests.support import scenario

pytestmark = pytest.mark.e2e

CLIENT_SCRIPT = """\
import fitapi, numpy as np

x = np.load("x.npy"); y = np.load("y.npy")
client = fitapi.Client()  # FITAPI_URL, FITAPI_API_KEY
model = client.models.create("model.json", seed=3)
model.compile(optimizer={"class_name": "Adam", "config": {"learning_rate": 0.1}},
              loss="binary_crossentropy", metrics=["accuracy"])
history = model.fit(x, y, validation_data=(x, y), epochs=4, batch_size=128, seed=1)
print(history.history["val_accuracy"])
print(model.evaluate(x, y, return_dict=True))
"""
PAGE = """<!doctype html><html><head><meta charset="utf-8"><style>
body {{ margin: 0; background: #eef1f5; font-family: sans-serif; }}
.term {{ margin: 16px; border-radius: 8px; background: #10151f; color: #d6dde8;
         box-shadow: 0 4px 16px rgba(0,0,0,.25); overflow: hidden; width: fit-content; }}
.bar {{ background: #263040; color: #9aa6b8; font-size: 12px; padding: 6px 12px; }}
pre {{ margin: 0; padding: 12px 16px; font: 13px/1.25 "DejaVu Sans Mono", monospace; }}
.cmd {{ color: #8fd18f; }}
</style></head><body><div class="term"><div class="bar">{title}</div><pre>{body}</pre></div>
</body></html>"""


def terminal(title: str, steps: list[tuple[str, str]]) -> str:
    """A page showing each command (after a prompt) and what it printed."""
    parts = []
    for command, output in steps:
        parts.append(f'<span class="cmd">$ {html.escape(command)}</span>\n')
        parts.append(html.escape(output.rstrip("\n")) + "\n")
    return PAGE.format(title=html.escape(title), body="".join(parts).rstrip("\n"))


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, str]]]:
    tmp = tmp_path_factory.mktemp("terminal")
    with embedded_server(tmp) as base:
        folder = tmp / "work"
        folder.mkdir()
        (folder / "model.json").write_text(json.dumps(scenario.MODEL))
        (folder / "compile.json").write_text(json.dumps(scenario.COMPILE))
        np.save(folder / "x.npy", scenario.X)
        np.save(folder / "y.npy", scenario.Y)
        # Shuffled, so that validation_split's last rows hold both classes.
        order = np.random.default_rng(0).permutation(len(scenario.X))
        np.savez(folder / "train.npz", x=scenario.X[order], y=scenario.Y[order])
        path = os.pathsep.join([str(ROOT / "client"), os.environ.get("PYTHONPATH", "")])
        env = {**os.environ, "PYTHONPATH": path, "FITAPI_URL": base, "COLUMNS": "110"}
        for name in ("FITAPI_API_KEY", "FITAPI_OUTPUT"):
            env.pop(name, None)
        yield folder, env


def run(folder: Path, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(list(args), cwd=folder, env=env, capture_output=True, text=True,
                          timeout=300, check=False)  # fmt: skip
    assert done.returncode == 0, (done.stdout, done.stderr)
    return done.stdout + done.stderr


def shoot(offline_page: OfflinePage, page: str, name: str) -> None:
    offline_page.page.set_content(page)
    offline_page.screenshot(name)
    assert offline_page.blocked == [] and offline_page.errors == []


def test_the_client_in_a_terminal(work: Any, offline_page: OfflinePage) -> None:
    folder, env = work
    (folder / "train.py").write_text(CLIENT_SCRIPT)
    output = run(folder, env, sys.executable, "train.py")
    epochs = [line for line in output.splitlines() if line.startswith("Epoch ")]
    assert epochs == [f"Epoch {n}/4" for n in range(1, 5)], output
    assert output.count("4/4 ━") == 4 and "val_accuracy" in output and "'loss'" in output
    shoot(offline_page, terminal("python train.py", [("python train.py", output)]), "client.png")


def test_the_command_line_in_a_terminal(work: Any, offline_page: OfflinePage) -> None:
    folder, env = work
    cli = [sys.executable, "-m", "fitapi.cli"]
    created = run(folder, env, *cli, "-o", "json", "models", "create", "model.json", "--seed", "3")
    model = json.loads(created)["id"]
    fit = run(folder, env, *cli, "fit", model, "--data", "train.npz", "--epochs", "5",
              "--batch-size", "128", "--validation-split", "0.2", "--compile", "compile.json",
              "--seed", "1", "--follow")  # fmt: skip
    assert sum(line.startswith("Epoch ") for line in fit.splitlines()) == 5, fit
    jobs = run(folder, env, *cli, "jobs", "list", "--model", model)
    assert "succeeded" in jobs
    short = model[:8]
    steps = [
        ("fitapi models create model.json --seed 3 -o json | jq -r .id", model),
        (f"fitapi fit {short}… --data train.npz --epochs 5 --batch-size 128 "
         "--validation-split 0.2 --compile compile.json --seed 1 --follow", fit),
        (f"fitapi jobs list --model {short}…", jobs),
    ]  # fmt: skip
    shoot(offline_page, terminal("fitapi", steps), "cli.png")
