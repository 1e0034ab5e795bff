"""JSON uploads for small data: `{"arrays": {NAME: nested lists, ...}}`.

The file is at most `json_max_bytes` (413 beyond) and is parsed whole. Nesting deeper than
Python's parser allows is a 422, not a RecursionError; shapes are inferred level by level without
recursion. An array of only true/false becomes bool; of only integers, int64 (each must fit);
with any float, float32 (each must be finite and within float32's range). Ragged lists, strings,
nulls, objects, a mix of booleans and numbers, and the NaN/Infinity constants are refused naming
the array and the index where they are.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from app.datasets.conversion import ArrayInfo, ConvertLimits, FormatError, check_name, clip
from app.datasets.npywriter import Outputs

_INT64 = np.iinfo(np.int64)
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise FormatError(f"the JSON object has the key {clip(repr(key))} twice")
        result[key] = value
    return result


def _refuse_constant(name: str) -> Any:
    raise FormatError(f"{name} is not accepted: arrays must hold finite numbers")


def _parse(raw: Path, limits: ConvertLimits) -> dict[str, Any]:
    size = raw.stat().st_size
    if size > limits.json_max_bytes:
        raise FormatError(
            f"a JSON upload is at most {limits.json_max_bytes} bytes; this one is {size} (use "
            "npy, npz, csv or parquet for larger data)",
            status=413,
        )
    try:
        document = json.loads(
            raw.read_bytes(), object_pairs_hook=_unique_keys, parse_constant=_refuse_constant
        )
    except RecursionError:
        raise FormatError("the JSON document is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, bad UTF-8, integers with too many digits
        raise FormatError(f"not valid JSON: {clip(str(exc), 200)}") from None
    if not isinstance(document, dict) or set(document) != {"arrays"}:
        raise FormatError('the JSON document must be {"arrays": {"<name>": [...], ...}}')
    arrays = document["arrays"]
    if not isinstance(arrays, dict) or not arrays:
        raise FormatError(
            '"arrays" must be an object of at least one array', loc=("body", "arrays")
        )
    return arrays


def _where(name: str, position: int, shape: list[int]) -> list[str | int]:
    index = [int(i) for i in np.unravel_index(position, shape)] if shape else []
    return ["body", "arrays", name, *index]


def _shape(name: str, value: Any, max_ndim: int) -> tuple[list[int], list[Any]]:
    """The shape of a nested list and its leaves in C order, level by level."""
    if not isinstance(value, list):
        raise FormatError(
            f"array {name!r} must be a (nested) list; got {type(value).__name__}",
            loc=("body", "arrays", name),
        )
    shape: list[int] = []
    level: list[Any] = [value]
    while level and isinstance(level[0], list):
        width = len(level[0])
        for position, item in enumerate(level):
            if not isinstance(item, list) or len(item) != width:
                found = f"a list of {len(item)}" if isinstance(item, list) else "a scalar"
                raise FormatError(
                    f"array {name!r} is ragged: at {_where(name, position, shape)[3:]} it has "
                    f"{found} where {width} items are expected",
                    loc=_where(name, position, shape),
                )
        shape.append(width)
        if len(shape) > max_ndim:
            raise FormatError(
                f"array {name!r} has more than {max_ndim} axes", loc=("body", "arrays", name)
            )
        level = [leaf for item in level for leaf in item]
    return shape, level


def _first_other(leaves: list[Any], allowed: tuple[type, ...]) -> int:
    return next(i for i, leaf in enumerate(leaves) if type(leaf) not in allowed)


def _values(name: str, shape: list[int], leaves: list[Any]) -> np.ndarray:
    kinds = {type(leaf) for leaf in leaves}
    position = None
    if kinds - {bool, int, float}:
        position = _first_other(leaves, (bool, int, float))
    elif bool in kinds and kinds != {bool}:
        position = _first_other(leaves, (bool,) if type(leaves[0]) is bool else (int, float))
    if position is not None:
        found = "null" if leaves[position] is None else type(leaves[position]).__name__
        raise FormatError(
            f"array {name!r} holds a {found} at {_where(name, position, shape)[3:]}; an array "
            "holds numbers only, or true/false only",
            loc=_where(name, position, shape),
        )
    if kinds == {bool}:
        return np.array(leaves, dtype=np.bool_).reshape(shape)
    if kinds == {int}:
        low, high = min(leaves), max(leaves)
        if low < _INT64.min or high > _INT64.max:
            position = leaves.index(low if low < _INT64.min else high)
            raise FormatError(
                f"array {name!r} holds an integer outside int64's range at "
                f"{_where(name, position, shape)[3:]}",
                loc=_where(name, position, shape),
            )
        return np.array(leaves, dtype=np.int64).reshape(shape)
    wide = np.array(leaves, dtype=np.float64)
    bad = ~(np.abs(wide) <= _FLOAT32_MAX)
    if bad.any():
        position = int(np.argmax(bad))
        raise FormatError(
            f"array {name!r} holds {float(wide[position])!r} at "
            f"{_where(name, position, shape)[3:]}; values must be finite and within float32's "
            "range",
            loc=_where(name, position, shape),
        )
    return wide.astype(np.float32).reshape(shape)


def convert_json(raw: Path, outputs: Outputs) -> list[ArrayInfo]:
    arrays = _parse(raw, outputs.limits)
    if len(arrays) > outputs.limits.max_arrays:
        raise FormatError(
            f"a dataset holds at most {outputs.limits.max_arrays} arrays; this one has "
            f"{len(arrays)}",
            loc=("body", "arrays"),
        )
    infos = []
    for name, value in arrays.items():
        check_name(name, loc=("body", "arrays", name))
        shape, leaves = _shape(name, value, outputs.limits.max_ndim)
        values = _values(name, shape, leaves)
        del leaves
        if shape[0] < 1:
            raise FormatError(
                f"array {name!r} must have at least one row; it has shape {tuple(shape)}",
                loc=("body", "arrays", name),
            )
        writer = outputs.writer(name, values.dtype, tuple(shape[1:]))
        writer.write(values)
        infos.append(writer.finish(shape[0]))
    return infos
