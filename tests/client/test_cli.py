"""The `fitapi` command line run as a user runs it (a subprocess) against one real uvicorn
server on the embedded default: exit codes, `--output json`, `--follow`'s one line per epoch,
predict's .npy, datasets by id, cancel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.e2e.harness import ROOT, start_embedded_api
from tests.support import scenario

pytestmark = pytest.mark.e2e

OK, FAILED, USAGE, CANCELLED, API_ERROR = 0, 1, 2, 3, 4


class Cli:
    def __init__(self, base: str, folder: Path) -> None:
        self.base = base
        self.folder = folder
        path = os.pathsep.join([str(ROOT / "client"), os.environ.get("PYTHONPATH", "")])
        self.env = {**os.environ, "PYTHONPATH": path, "FITAPI_URL": base, "COLUMNS": "200"}
        self.env.pop("FITAPI_API_KEY", None)
        self.env.pop("FITAPI_OUTPUT", None)

    def __call__(self, *args: str, code: int = OK) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "fitapi.cli", *args], cwd=self.folder, env=self.env,
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr, done.stderr
        return done

    def json(self, *args: str, code: int = OK) -> Any:
        return json.loads(self(*args, "--output", "json", code=code).stdout)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    tmp = tmp_path_factory.mktemp("cli")
    # Predicts over 200 rows run as jobs, so that the 500-row set takes that path.
    env = {"DATA_DIR": str(tmp / "data"), "PREDICT_SYNC_MAX_ROWS": "200"}
    api, base = start_embedded_api(env, tmp)
    work = tmp / "work"
    work.mkdir()
    (work / "model.json").write_text(json.dumps(scenario.MODEL))
    np.savez(work / "train.npz", x=scenario.X, y=scenario.Y)
    np.save(work / "x.npy", scenario.X)
    np.save(work / "few.npy", scenario.X[:96])
    np.save(work / "y.npy", scenario.Y)
    (work / "compile.json").write_text(json.dumps(scenario.COMPILE))
    try:
        yield base, work
    finally:
        api.stop()


@pytest.fixture(scope="module")
def cli(server: tuple[str, Path]) -> Cli:
    return Cli(*server)


@pytest.fixture(scope="module")
def model_id(cli: Cli) -> str:
    model = cli.json("models", "create", "model.json", "--seed", "3", "--name", "seed")
    assert model["summary"]["total_params"] == 7
    return str(model["id"])


def test_fit_follow_prints_one_line_per_epoch(cli: Cli, model_id: str) -> None:
    done = cli("fit", model_id, "--data", "train.npz", "--epochs", "3", "--batch-size", "128",
               "--optimizer", "adam", "--loss", "binary_crossentropy", "--metrics", "accuracy",
               "--validation-split", "0.2", "--follow")  # fmt: skip
    lines = done.stdout.splitlines()
    assert [line.split(" - ")[0] for line in lines] == ["Epoch 1/3", "Epoch 2/3", "Epoch 3/3"]
    assert all("loss: " in line and "val_accuracy: " in line for line in lines), lines
    assert "succeeded" in done.stderr

    job = cli.json("jobs", "list", "--model", model_id)[0]
    assert job["status"] == "succeeded" and job["epochs_done"] == 3
    logs = cli.json("jobs", "logs", job["id"])
    assert [row["epoch"] for row in logs] == [0, 1, 2]
    # The lines carry the logged values, as Keras's progress bar prints them.
    assert f"val_loss: {logs[-1]['logs']['val_loss']:.4f}" in lines[-1]


def test_upload_then_fit_by_id_with_json_output(
    cli: Cli, model_id: str, server: tuple[str, Path]
) -> None:
    dataset = cli.json("datasets", "upload", "train.npz", "--name", "train")
    assert sorted(a["name"] for a in dataset["arrays"]) == ["x", "y"]
    # The same bytes again: the stored dataset, not a second one.
    assert cli.json("datasets", "upload", "train.npz")["id"] == dataset["id"]
    assert cli.json("datasets", "get", dataset["id"])["id"] == dataset["id"]
    assert dataset["id"] in cli("datasets", "list").stdout

    job = cli.json("fit", model_id, "--data", dataset["id"], "--epochs", "2", "--batch-size",
                   "128", "--compile", "compile.json", "--follow")  # fmt: skip
    assert job["status"] == "succeeded" and job["epochs_done"] == 2
    assert sorted(job["history"]) == ["accuracy", "loss"]

    # CSV with a label column; then deleted, after which it is a 404.
    (server[1] / "houses.csv").write_text("rooms,area,price\n3,70.5,210\n4,92.0,280\n")
    houses = cli.json("datasets", "upload", "houses.csv", "--label", "price")
    assert {a["name"]: a["shape"] for a in houses["arrays"]} == {"x": [2, 2], "y": [2]}
    assert cli.json("datasets", "delete", houses["id"]) == {"id": houses["id"], "deleted": True}
    cli("datasets", "get", houses["id"], code=API_ERROR)

    # x and y as two files: x.npy with --y y.npy.
    job = cli.json("fit", model_id, "--data", "x.npy", "--y", "y.npy", "--epochs", "1")
    assert job["kind"] == "fit"
    ended = cli.json("jobs", "watch", job["id"])
    assert ended["status"] == "succeeded"


def test_a_failed_job_exits_1(cli: Cli, model_id: str, server: tuple[str, Path]) -> None:
    # A schedule as learning rate with ReduceLROnPlateau fails at the first reduction
    # (LearningRateNotSettable), as Keras's does.
    folder = server[1]
    schedule = {
        "class_name": "ExponentialDecay",
        "config": {"initial_learning_rate": 0.1, "decay_steps": 10, "decay_rate": 0.9},
    }
    compile_spec = {
        "optimizer": {"class_name": "Adam", "config": {"learning_rate": schedule}},
        "loss": "binary_crossentropy",
    }
    (folder / "schedule.json").write_text(json.dumps(compile_spec))
    (folder / "plateau.json").write_text(json.dumps([{"class_name": "ReduceLROnPlateau",
        "config": {"monitor": "loss", "patience": 0, "min_delta": 1e9}}]))  # fmt: skip
    done = cli("fit", model_id, "--data", "train.npz", "--epochs", "5", "--batch-size", "128",
               "--compile", "schedule.json", "--callbacks", "plateau.json", "--follow",
               code=FAILED)  # fmt: skip
    assert "LearningRateNotSettable" in done.stderr
    job = cli.json("jobs", "list", "--model", model_id)[0]
    assert job["status"] == "failed"
    assert cli.json("jobs", "watch", job["id"], code=FAILED)["error"]["type"] == (
        "LearningRateNotSettable"
    )


def test_api_errors_exit_4_with_the_field_and_reason(cli: Cli, model_id: str) -> None:
    missing = str(uuid.uuid4())
    done = cli("jobs", "get", missing, code=API_ERROR)
    assert "404" in done.stderr and done.stdout == ""
    error = cli.json("models", "get", missing, code=API_ERROR)["error"]
    assert error["status"] == 404 and error["detail"][0]["type"]

    # A 422 names the field: an unknown loss.
    done = cli("fit", model_id, "--data", "train.npz", "--loss", "no_such_loss", code=API_ERROR)
    assert "body.compile.loss" in done.stderr and "422" in done.stderr


def test_usage_errors_exit_2(cli: Cli, model_id: str) -> None:
    cli("fit", model_id, "--epochs", "1", code=USAGE)  # no --data
    cli("fit", model_id, "--data", "missing.npz", code=USAGE)
    cli("fit", model_id, "--data", "x.npy", code=USAGE)  # x alone, no --y
    cli("fit", model_id, "--data", "train.npz", "--compile", "compile.json", "--loss", "mse",
        code=USAGE)  # fmt: skip
    cli("--output", "xml", "jobs", "list", code=USAGE)
    cli("predict", model_id, "--data", "x.npy", "--out", "preds.txt", code=USAGE)


def http_predict(base: str, model_id: str, x: np.ndarray) -> np.ndarray:
    r = httpx.post(f"{base}/v1/models/{model_id}/predict", json={"x": x.tolist()}, timeout=60)
    assert r.status_code == 200, r.text
    return np.asarray(r.json()["predictions"], np.float32)


def test_predict_writes_what_the_http_predict_returns(
    cli: Cli, model_id: str, server: tuple[str, Path]
) -> None:
    base, folder = server
    result = cli.json("predict", model_id, "--data", "few.npy", "--out", "few-preds.npy")
    assert result["arrays"] == [{"name": "predictions", "dtype": "float32", "shape": [96, 1]}]
    predictions = np.load(folder / "few-preds.npy")
    assert predictions.dtype == np.float32
    np.testing.assert_array_equal(predictions, http_predict(base, model_id, scenario.X[:96]))

    cli("predict", model_id, "--data", "few.npy", "--out", "few-preds.npz")
    with np.load(folder / "few-preds.npz") as npz:
        np.testing.assert_array_equal(npz[npz.files[0]], predictions)


def test_predict_over_the_sync_limit_waits_for_its_job(
    cli: Cli, model_id: str, server: tuple[str, Path]
) -> None:
    base, folder = server
    done = cli("predict", model_id, "--data", "x.npy", "--out", "preds.npy")
    job = cli.json("jobs", "list", "--model", model_id)[0]
    assert job["kind"] == "predict" and job["status"] == "succeeded", job
    assert f"job {job['id']} succeeded" in done.stderr
    # The job predicts in batches of 32; synchronous requests of 96 rows batch the same rows.
    expected = np.concatenate([http_predict(base, model_id, scenario.X[i : i + 96])
                               for i in range(0, 500, 96)])  # fmt: skip
    np.testing.assert_array_equal(np.load(folder / "preds.npy"), expected)


def test_cancel_ends_the_job_cancelled(cli: Cli, model_id: str) -> None:
    job = cli.json("fit", model_id, "--data", "train.npz", "--epochs", "10000",
                   "--batch-size", "8", "--compile", "compile.json")  # fmt: skip
    assert job["status"] in ("queued", "running")
    cancelled = cli.json("jobs", "cancel", job["id"])
    assert cancelled["id"] == job["id"]
    assert cli.json("jobs", "watch", job["id"], code=CANCELLED)["status"] == "cancelled"
    assert "cancelled" in cli("jobs", "get", job["id"]).stdout
