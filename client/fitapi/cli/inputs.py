"""What the training commands read from the command line: `--data ID|FILE` turned into dataset
references (a file is uploaded first, or found by its content hash), and the JSON files for
`--compile` and `--callbacks`."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import typer

from fitapi.cli.state import State

MAX_JSON_BYTES = 1 << 20


def is_id(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def dataset_arrays(st: State, source: str, hint: str) -> tuple[str, list[str]]:
    """The dataset `source` names (an id, or an .npy/.npz file uploaded unless already stored)
    and its array names."""
    path = Path(source)
    if path.is_file():
        if path.suffix.lower() not in (".npy", ".npz"):
            raise typer.BadParameter(
                "a file here is an .npy or .npz; upload other formats with `fitapi datasets "
                "upload FILE --label COLUMN` and give the dataset's id",
                param_hint=hint,
            )
        dataset = st.client.datasets.upload(str(path))
    elif is_id(source):
        dataset = st.client.datasets.get(source)
    else:
        raise typer.BadParameter(f"{source!r} is neither a file nor a dataset id", param_hint=hint)
    return dataset.id, [str(a["name"]) for a in dataset.arrays]


def pick(dataset_id: str, names: list[str], wanted: str, hint: str) -> dict[str, Any]:
    """A reference to array `wanted`, or to the only array there is."""
    if wanted in names:
        return {"dataset": dataset_id, "array": wanted}
    if len(names) == 1:
        return {"dataset": dataset_id, "array": names[0]}
    raise typer.BadParameter(
        f"dataset {dataset_id} has arrays {', '.join(names)}; expected one named {wanted!r}",
        param_hint=hint,
    )


def training_refs(st: State, data: str, y: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """x and y for a fit: `--data` holding arrays x and y, or x alone with `--y`."""
    dataset_id, names = dataset_arrays(st, data, "--data")
    if y is not None:
        y_id, y_names = dataset_arrays(st, y, "--y")
        return pick(dataset_id, names, "x", "--data"), pick(y_id, y_names, "y", "--y")
    if "x" in names and "y" in names:
        return {"dataset": dataset_id, "array": "x"}, {"dataset": dataset_id, "array": "y"}
    raise typer.BadParameter(
        f"needs arrays x and y (it has {', '.join(names)}), or give y with --y ID|FILE",
        param_hint="--data",
    )


def json_file(path: Path, hint: str) -> Any:
    """A small JSON file's value; a missing, oversized or malformed file is a usage error."""
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise typer.BadParameter(f"{path} is over {MAX_JSON_BYTES} bytes", param_hint=hint)
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise typer.BadParameter(f"cannot read {path}: {exc.strerror}", param_hint=hint) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise typer.BadParameter(f"{path} is not JSON: {exc}", param_hint=hint) from None


def compile_spec(
    path: Path | None, optimizer: str | None, loss: str | None, metrics: list[str] | None
) -> dict[str, Any] | None:
    """`--compile FILE`, or the spec the flags make; None leaves the model's own."""
    flags = optimizer is not None or loss is not None or bool(metrics)
    if path is not None:
        if flags:
            raise typer.BadParameter(
                "give --compile or --optimizer/--loss/--metrics, not both", param_hint="--compile"
            )
        loaded = json_file(path, "--compile")
        if not isinstance(loaded, dict):
            raise typer.BadParameter(
                "must hold a JSON object (the fit request's compile)", param_hint="--compile"
            )
        return loaded
    if not flags:
        return None
    spec: dict[str, Any] = {"optimizer": optimizer or "rmsprop"}
    if loss is not None:
        spec["loss"] = loss
    if metrics:
        spec["metrics"] = [m for item in metrics for m in item.split(",") if m]
    return spec


def callbacks_spec(path: Path | None) -> list[Any] | None:
    if path is None:
        return None
    value = json_file(path, "--callbacks")
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        raise typer.BadParameter(
            "must hold a list of {class_name, config} objects", param_hint="--callbacks"
        )
    return value
