"""Keras `.keras` files in and out, with our own reader: no Keras deserialization code runs.

A `.keras` file is a zip of `metadata.json`, `config.json` (the model JSON, with its
`compile_config`) and `model.weights.h5`, whose datasets `layers/<layer name>/vars/<i>` hold each
layer's weights in Keras's order. The reader accepts exactly those members (Keras may add an
empty `assets/` folder), checks names and sizes before reading, and reads numeric datasets only.
"""

from __future__ import annotations

import io
import json
import zipfile
import zlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import h5py
import numpy as np

from app.core.errors import InvalidInput
from app.engine.models.model import Model
from app.engine.optimizers import OPTIMIZERS
from app.engine.training.compile import CompileSpec

CONFIG, METADATA, WEIGHTS = "config.json", "metadata.json", "model.weights.h5"
MEMBERS = {CONFIG, METADATA, WEIGHTS}
MAX_JSON_BYTES = 16 * 1024 * 1024
KERAS_VERSION = "3.15.1"  # the Keras whose file layout this writes
BODY = "body"


def _bad(message: str, *loc: str | int) -> InvalidInput:
    return InvalidInput(message, loc=[BODY, *loc])


def read_archive(data: bytes, *, max_bytes: int) -> tuple[dict[str, Any], bytes]:
    """(config.json as a dict, the weights file's bytes), after checking the zip."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise _bad(f"not a .keras file (a zip archive): {exc}") from exc
    with archive:
        infos = archive.infolist()
        for info in infos:
            name = info.filename
            if name.startswith("/") or ".." in name.split("/") or "\\" in name:
                raise _bad(f"member {name!r} has an unsafe path", name)
            if name not in MEMBERS and not (name.startswith("assets/") and info.is_dir()):
                raise _bad(
                    f"unexpected member {name!r}; a .keras file holds {sorted(MEMBERS)}", name
                )
            if info.flag_bits & 0x41:
                raise _bad(f"member {name!r} is encrypted", name)
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise _bad(f"member {name!r} uses compression method {info.compress_type}; only "
                           "0 (stored) and 8 (deflated) are accepted", name)  # fmt: skip
        sizes = {i.filename: i.file_size for i in infos}
        for name in (CONFIG, WEIGHTS):
            if name not in sizes:
                raise _bad(f"{name} is missing", name)
        if sizes[CONFIG] > MAX_JSON_BYTES or sizes.get(METADATA, 0) > MAX_JSON_BYTES:
            raise _bad(f"a JSON member is larger than {MAX_JSON_BYTES} bytes", CONFIG)
        if sum(sizes.values()) > max_bytes:
            raise _bad(f"the archive expands past {max_bytes} bytes")
        try:
            config = json.loads(_read_member(archive, CONFIG))
        except RecursionError:
            raise _bad("config.json is nested too deeply", CONFIG) from None
        except ValueError as exc:
            raise _bad(f"config.json is not JSON: {exc}", CONFIG) from exc
        if not isinstance(config, dict):
            raise _bad("config.json must be an object", CONFIG)
        return config, _read_member(archive, WEIGHTS)


def _read_member(archive: zipfile.ZipFile, name: str) -> bytes:
    """The member's bytes; zipfile stops at its declared size and checks its CRC-32, and reports
    a broken member in several exception types."""
    try:
        content = archive.read(name)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError,
            NotImplementedError, ValueError) as exc:  # fmt: skip
        raise _bad(f"member {name!r} cannot be read: {exc}", name) from None
    declared = archive.getinfo(name).file_size
    if len(content) != declared:  # zipfile stops at the declared size but not short of it
        raise _bad(f"member {name!r} holds {len(content)} bytes but declares {declared}", name)
    return content


def _plain_dataset(f: h5py.File, path: str) -> h5py.Dataset | None:
    """The dataset at `path` if every link to it is a hard link inside this file and its data
    lives in this file (no external storage, no virtual mapping); an HDF5 file can otherwise
    make the reader open other files on this machine."""
    node: Any = f
    for part in path.split("/"):
        if not isinstance(node, h5py.Group) or not isinstance(
            node.get(part, getlink=True), h5py.HardLink
        ):
            return None
        node = node[part]
    if not isinstance(node, h5py.Dataset) or node.external or node.is_virtual:
        return None
    return node


def read_weights(model: Model, h5_bytes: bytes) -> list[np.ndarray]:
    """The model's weights from model.weights.h5: only plain numeric datasets of exactly the
    shape each weight has are read (their size is checked before any data is)."""
    arrays: list[np.ndarray] = []
    expected = list(model.weight_tensors().values())
    try:
        with h5py.File(io.BytesIO(h5_bytes), "r") as f:
            for path, target in zip(model.h5_paths(), expected, strict=True):
                dataset = _plain_dataset(f, path)
                if dataset is None or dataset.dtype.kind not in "fiub":
                    raise _bad(f"the weights file has no plain numeric array at {path}", WEIGHTS)
                if tuple(dataset.shape) != tuple(target.shape):
                    raise _bad(f"{path} has shape {list(dataset.shape)}; the model's weight has "
                               f"{list(target.shape)}", WEIGHTS)  # fmt: skip
                arrays.append(np.asarray(dataset[()]))
    except (OSError, ValueError) as exc:
        raise _bad(f"model.weights.h5 is not a readable HDF5 file: {exc}", WEIGHTS) from exc
    return arrays


def _with_module(spec: Any, module: str) -> Any:
    if isinstance(spec, Mapping) and "class_name" in spec:
        return {"module": module, "registered_name": None, **spec,
                "config": dict(spec.get("config") or {})}  # fmt: skip
    if isinstance(spec, Mapping):  # per output, keyed by output name
        return {k: _with_module(v, module) for k, v in spec.items()}
    if isinstance(spec, list):
        return [_with_module(s, module) for s in spec]
    return spec


def keras_compile_config(compile_config: Mapping[str, Any]) -> dict[str, Any]:
    """Our compile spec as Keras's `compile_config`: the optimizer written out in full, and
    every object given the `module` Keras's loader needs."""
    spec = CompileSpec.parse(compile_config)
    optimizer = spec.make_optimizer()
    return {
        "optimizer": {
            "module": "keras.optimizers",
            "class_name": OPTIMIZERS.canonical_name(type(optimizer)),
            "config": optimizer.get_config(),
            "registered_name": None,
        },
        "loss": _with_module(spec.loss, "keras.losses"),
        "loss_weights": spec.loss_weights,
        "metrics": _with_module(spec.metrics, "keras.metrics") or None,
        "weighted_metrics": _with_module(spec.weighted_metrics, "keras.metrics") or None,
        "run_eagerly": False,
        "steps_per_execution": 1,
        "jit_compile": False,
    }


def write_archive(model: Model, compile_config: Mapping[str, Any] | None) -> bytes:
    config = model.get_config()
    if compile_config:
        config["compile_config"] = keras_compile_config(compile_config)
    weights = io.BytesIO()
    with h5py.File(weights, "w") as f:
        for path, tensor in zip(model.h5_paths(), model.weight_tensors().values(), strict=True):
            f.create_dataset(path, data=tensor.detach().cpu().numpy())
        f.create_group("vars").attrs["name"] = model.name
    metadata = {"keras_version": KERAS_VERSION,
                "date_saved": datetime.now(UTC).strftime("%Y-%m-%d@%H:%M:%S")}  # fmt: skip
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(METADATA, json.dumps(metadata))
        archive.writestr(CONFIG, json.dumps(config))
        archive.writestr(WEIGHTS, weights.getvalue())
    return out.getvalue()
