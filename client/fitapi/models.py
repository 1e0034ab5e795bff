"""client.models and Model: a model on the server with Keras's methods (compile, fit,
evaluate, predict, get_weights, set_weights), made from a Keras model, its JSON or a `.keras`
file; numpy data goes up as datasets (each array once)."""

from __future__ import annotations

import json
import math
import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fitapi import arrays
from fitapi.callbacks import spec_of
from fitapi.datasets import Dataset
from fitapi.history import History
from fitapi.jobs import Job
from fitapi.specs import compile_spec, plain

if TYPE_CHECKING:
    from fitapi.client import Client

# Above this many bytes predict's x goes up as a dataset rather than as the request's body.
PREDICT_BODY_MAX = 8 << 20


class Model:
    """A model on the server: `.id`, `.name`, `.raw`; Keras's methods run there."""

    def __init__(self, client: Client, raw: dict[str, Any]) -> None:
        self._client = client
        self.raw = raw

    id = property(lambda self: str(self.raw["id"]))
    name = property(lambda self: str(self.raw.get("name", "")))

    def __repr__(self) -> str:
        return f"<fitapi.Model {self.id} {self.name!r}>"

    def refresh(self) -> Model:
        self.raw = self._client.get_json(f"/v1/models/{self.id}")
        return self

    def summary(self) -> str:
        """Keras's summary table, as text (also printed)."""
        s = self.raw["summary"]
        rows = [f'Model: "{s["name"]}"', f"{'Layer (type)':<32}{'Output Shape':<26}Param #"]
        for layer in s["layers"]:
            shape = "(" + ", ".join("None" if d is None else str(d) for d in
                                    layer["output_shape"]) + ")"  # fmt: skip
            rows.append(f"{layer['name'] + ' (' + layer['class_name'] + ')':<32}{shape:<26}"
                        f"{layer['params']:,}")  # fmt: skip
        rows += [f"Total params: {s['total_params']:,}",
                 f"Trainable params: {s['trainable_params']:,}",
                 f"Non-trainable params: {s['non_trainable_params']:,}"]  # fmt: skip
        text = "\n".join(rows)
        print(text)
        return text

    def compile(self, optimizer: Any = "rmsprop", loss: Any = None, metrics: Any = None,
                loss_weights: Any = None, weighted_metrics: Any = None, run_eagerly: bool = False,
                steps_per_execution: int = 1, jit_compile: Any = "auto",
                auto_scale_loss: bool = True, **options: Any) -> None:  # fmt: skip
        """Keras's compile, on the server (POST /v1/models/{id}/compile): the spec is checked
        there, stored with the model, and the optimizer starts afresh, as in Keras."""
        spec = compile_spec(optimizer, loss, metrics, loss_weights=loss_weights,
                            weighted_metrics=weighted_metrics, run_eagerly=run_eagerly,
                            steps_per_execution=steps_per_execution, jit_compile=jit_compile,
                            auto_scale_loss=auto_scale_loss, **options)  # fmt: skip
        self.raw = self._client.post_json(f"/v1/models/{self.id}/compile", spec)

    def _data(self, value: Any, what: str) -> Any:
        """Where an array goes: a dataset reference (numpy data is uploaded, once)."""
        if isinstance(value, Dataset):
            return value.ref()
        if isinstance(value, Mapping):
            if "dataset" in value:
                return dict(value)
            return {str(k): self._data(v, f"{what}.{k}") for k, v in value.items()}
        if (
            isinstance(value, (list, tuple))
            and value
            and all(isinstance(v, (np.ndarray, Dataset, Mapping)) for v in value)
        ):
            return [self._data(v, f"{what}[{i}]") for i, v in enumerate(value)]
        array = arrays.as_array(value, what)
        return self._client.datasets.upload(array, array=None).ref()

    def fit(self, x: Any = None, y: Any = None, batch_size: int | None = None, epochs: int = 1,
            verbose: int | str = "auto", callbacks: Sequence[Any] | None = None,
            validation_split: float = 0.0, validation_data: Any = None, shuffle: Any = True,
            class_weight: Mapping[int, float] | None = None, sample_weight: Any = None,
            initial_epoch: int = 0, steps_per_epoch: int | None = None,
            validation_steps: int | None = None, validation_batch_size: int | None = None,
            validation_freq: Any = 1, *, seed: int | None = None, adapt: bool = False,
            wait: bool = True) -> History | Job:  # fmt: skip
        """Keras's fit, run by the server. Returns the History (printing Keras's progress
        lines), or with wait=False the Job at once."""
        body: dict[str, Any] = {"x": self._data(x, "x"), "epochs": epochs}
        if y is not None:
            body["y"] = self._data(y, "y")
        if sample_weight is not None:
            body["sample_weight"] = self._data(sample_weight, "sample_weight")
        if validation_data is not None:
            if isinstance(validation_data, Mapping):
                vx, vy, vw = (validation_data.get(k) for k in ("x", "y", "sample_weight"))
            else:
                vx, vy, *rest = validation_data
                vw = rest[0] if rest else None
            body["validation_data"] = {"x": self._data(vx, "validation_data.x"),
                                       "y": self._data(vy, "validation_data.y")}  # fmt: skip
            if vw is not None:
                body["validation_data"]["sample_weight"] = self._data(vw, "validation_data.w")
        elif validation_split:
            body["validation_split"] = validation_split
        specs = [spec_of(c) for c in callbacks or []]
        options = {"batch_size": batch_size, "shuffle": shuffle, "initial_epoch": initial_epoch,
                   "steps_per_epoch": steps_per_epoch, "validation_steps": validation_steps,
                   "validation_batch_size": validation_batch_size,
                   "validation_freq": validation_freq, "seed": seed,
                   "callbacks": [s for s in specs if s is not None] or None,
                   "class_weight": None if class_weight is None else
                   {str(int(k)): float(v) for k, v in class_weight.items()},
                   "adapt": adapt or None}  # fmt: skip
        defaults = {"shuffle": True, "initial_epoch": 0, "validation_freq": 1}
        body.update({k: plain(v) for k, v in options.items()
                     if v is not None and not (k in defaults and v == defaults[k])})  # fmt: skip
        raw = self._client.post_json(f"/v1/models/{self.id}/fit", body)
        job = Job(self._client, raw, steps=_steps(x, batch_size, steps_per_epoch,
                                                  validation_split, validation_data))  # fmt: skip
        if not wait:
            return job
        history = job.wait(verbose)
        self.refresh()
        return history

    def evaluate(self, x: Any = None, y: Any = None, batch_size: int | None = None,
                 verbose: int | str = "auto", sample_weight: Any = None,
                 return_dict: bool = False, **kwargs: Any) -> Any:  # fmt: skip
        """Keras's evaluate: the loss (and metrics) over x and y on the model's weights."""
        body: dict[str, Any] = {"x": self._data(x, "x"), "y": self._data(y, "y")}
        if sample_weight is not None:
            body["sample_weight"] = self._data(sample_weight, "sample_weight")
        body.update({k: plain(v) for k, v in {"batch_size": batch_size, **kwargs}.items()
                     if v is not None})  # fmt: skip
        response = self._client.request("POST", f"/v1/models/{self.id}/evaluate", json=body)
        result: dict[str, Any] = response.json()
        if response.status_code == 202:  # a job, over the server's sync limits
            job = Job(self._client, result)
            job.wait(verbose=0)
            result = dict(job.raw.get("result") or {})
        if return_dict:
            return result
        values = [result["loss"], *(v for k, v in result.items() if k != "loss")]
        return values[0] if len(values) == 1 else values

    def predict(self, x: Any, batch_size: int | None = None, verbose: int | str = "auto",
                **kwargs: Any) -> Any:  # fmt: skip
        """Keras's predict: an array, or a dict of arrays by output name."""
        params = {"batch_size": batch_size, **kwargs}
        accept = {"Accept": "application/x-npy, application/x-npz"}
        small = isinstance(x, np.ndarray) and x.nbytes <= PREDICT_BODY_MAX
        if small:
            response = self._client.request(
                "POST", f"/v1/models/{self.id}/predict", params=params,
                content=arrays.npy_bytes(x),
                headers={**accept, "Content-Type": "application/x-npy"},
            )  # fmt: skip
        else:
            body = {"x": self._data(x, "x"), **{k: v for k, v in params.items() if v is not None}}
            response = self._client.request("POST", f"/v1/models/{self.id}/predict", json=body,
                                            headers=accept)  # fmt: skip
        if response.status_code == 202:
            job = Job(self._client, response.json())
            job.wait(verbose=0)
            dataset = self._client.datasets.get(str(job.raw["result_dataset_id"]))
            outputs = {a["name"]: dataset.download(a["name"]) for a in dataset.arrays}
            return next(iter(outputs.values())) if len(outputs) == 1 else outputs
        media = response.headers.get("content-type", "")
        if media.startswith("application/x-npz"):
            return arrays.load_npz(response.content)
        return arrays.load_npy(response.content)

    def get_weights(self) -> list[np.ndarray]:
        """Keras's get_weights order: an `.npz` of arr_0, arr_1, ..."""
        data = arrays.load_npz(self._client.request("GET", f"/v1/models/{self.id}/weights").content)
        return [data[f"arr_{i}"] for i in range(len(data))]

    def set_weights(self, weights: Sequence[Any]) -> None:
        body = arrays.npz_bytes({f"arr_{i}": w for i, w in enumerate(weights)})
        self.raw = self._client.request(
            "PUT", f"/v1/models/{self.id}/weights", content=body,
            headers={"Content-Type": "application/octet-stream"},
        ).json()  # fmt: skip

    def to_keras(self) -> Any:
        """The model as a Keras model (its `.keras` export, loaded by Keras)."""
        import keras

        data = self._client.request("GET", f"/v1/models/{self.id}/model.keras").content
        with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
            # The export holds no optimizer state yet (docs/api.md says so): not worth a warning.
            warnings.filterwarnings("ignore", "Skipping variable loading for optimizer")
            path = Path(folder) / "model.keras"
            path.write_bytes(data)
            return keras.saving.load_model(path)

    def jobs(self) -> list[Job]:
        return self._client.jobs.list(model_id=self.id)


def _rows(value: Any) -> int | None:
    if isinstance(value, Dataset):
        return int(value.arrays[0]["shape"][0]) if len(value.arrays) == 1 else None
    if isinstance(value, Mapping):
        if "dataset" in value:
            rows = value.get("rows")
            return None if rows is None else int(rows[1]) - int(rows[0])
        value = next(iter(value.values()), None)
    if isinstance(value, (list, tuple)) and value and isinstance(value[0], np.ndarray):
        value = value[0]
    return len(value) if value is not None and hasattr(value, "__len__") else None


def _steps(x: Any, batch_size: int | None, steps_per_epoch: int | None,
           validation_split: float, validation_data: Any) -> int | None:  # fmt: skip
    """Batches per epoch, as Keras counts them (for the progress bar)."""
    if steps_per_epoch:
        return steps_per_epoch
    n = _rows(x)
    if n is None:
        return None
    if validation_data is None and validation_split:
        n = int(n * (1.0 - validation_split))
    return math.ceil(n / (batch_size or 32)) if n else None


class Models:
    def __init__(self, client: Client) -> None:
        self._client = client

    def create(self, source: Any, *, name: str | None = None, seed: int | None = None) -> Model:
        """From a keras.Model (its config and its weights), a `to_json()` dict or string (or
        a POST /v1/models body: {"config", "seed"?, "name"?}), or a path to a `.json` or
        `.keras` file."""
        if isinstance(source, (str, os.PathLike)) and str(source).endswith(".keras"):
            path = Path(source)
            raw = self._client.request(
                "POST", "/v1/models/import", params={"name": name, "seed": seed},
                content=lambda: iter([path.read_bytes()]),
                headers={"Content-Type": "application/octet-stream"},
            ).json()  # fmt: skip
            return Model(self._client, raw)
        weights = None
        if isinstance(source, (str, os.PathLike)) and str(source).endswith(".json"):
            config = json.loads(Path(source).read_text())
        elif isinstance(source, str):
            config = json.loads(source)
        elif isinstance(source, Mapping):
            config = dict(source)
        elif hasattr(source, "to_json") and hasattr(source, "get_weights"):
            config = json.loads(source.to_json())
            name = name or getattr(source, "name", None)
            weights = source.get_weights() if source.built else None
        else:
            raise TypeError(f"cannot make a model of {type(source).__name__}: give a keras.Model, "
                            "its to_json() dict or string, or a .json or .keras path")  # fmt: skip
        if "config" in config and "class_name" not in config:  # a POST /v1/models body
            name = name if name is not None else config.get("name")
            seed = seed if seed is not None else config.get("seed")
            config = config["config"]
        body = {"config": config, "name": name, "seed": seed}
        model = Model(self._client, self._client.post_json(
            "/v1/models", {k: v for k, v in body.items() if v is not None}))  # fmt: skip
        if weights:
            model.set_weights(weights)
        return model

    def get(self, model_id: str) -> Model:
        return Model(self._client, self._client.get_json(f"/v1/models/{model_id}"))

    def list(self, limit: int = 50, offset: int = 0) -> list[Model]:
        body = self._client.get_json("/v1/models", {"limit": limit, "offset": offset})
        return [Model(self._client, raw) for raw in body["items"]]

    def delete(self, model_id: str) -> None:
        self._client.request("DELETE", f"/v1/models/{model_id}")
