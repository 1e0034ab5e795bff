"""Typed reads of values from user configs, each failing with a ConfigError that names the field."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from app.engine.config.errors import ConfigError, Loc

_MISSING: Any = object()


def _get(config: Mapping[str, Any], key: str, loc: Loc, default: Any) -> Any:
    if key in config:
        return config[key]
    if default is _MISSING:
        raise ConfigError((*loc, key), "is required")
    return default


def get_float(
    config: Mapping[str, Any],
    key: str,
    loc: Loc,
    default: Any = _MISSING,
    *,
    min_value: float | None = None,
    max_value: float | None = None,
    min_exclusive: bool = False,
    allow_none: bool = False,
) -> Any:
    """A finite number (JSON ints are accepted); None only if `allow_none`."""
    value = _get(config, key, loc, default)
    if value is None and (allow_none or default is None):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError((*loc, key), f"must be a number, got {value!r}")
    try:
        value = float(value)
    except OverflowError:
        raise ConfigError((*loc, key), "is too large to be a float32 number") from None
    if not math.isfinite(value):
        raise ConfigError((*loc, key), f"must be finite, got {value}")
    if min_value is not None and (value <= min_value if min_exclusive else value < min_value):
        op = ">" if min_exclusive else ">="
        raise ConfigError((*loc, key), f"must be {op} {min_value}, got {value}")
    if max_value is not None and value > max_value:
        raise ConfigError((*loc, key), f"must be <= {max_value}, got {value}")
    return value


def get_int(
    config: Mapping[str, Any],
    key: str,
    loc: Loc,
    default: Any = _MISSING,
    *,
    min_value: int | None = None,
    max_value: int | None = None,
    allow_none: bool = False,
) -> Any:
    """An integer (a float with no fractional part is accepted, as JSON writers emit 1.0)."""
    value = _get(config, key, loc, default)
    if value is None and (allow_none or default is None):
        return None
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError((*loc, key), f"must be an integer, got {value!r}")
    if min_value is not None and value < min_value:
        raise ConfigError((*loc, key), f"must be >= {min_value}, got {value}")
    if max_value is not None and value > max_value:
        raise ConfigError((*loc, key), f"must be <= {max_value}, got {value}")
    return value


def get_axes(
    config: Mapping[str, Any], key: str, loc: Loc, default: Any = _MISSING
) -> int | list[int]:
    """An axis option: an integer, or a non-empty list of them (returned as a list)."""
    value = _get(config, key, loc, default)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if (
        isinstance(value, list | tuple)
        and value
        and all(isinstance(a, int) and not isinstance(a, bool) for a in value)
    ):
        return list(value)
    raise ConfigError((*loc, key), f"must be an integer or a list of them, got {value!r}")


def get_bool(config: Mapping[str, Any], key: str, loc: Loc, default: Any = _MISSING) -> bool:
    value = _get(config, key, loc, default)
    if not isinstance(value, bool):
        raise ConfigError((*loc, key), f"must be true or false, got {value!r}")
    return value


def get_str(
    config: Mapping[str, Any],
    key: str,
    loc: Loc,
    default: Any = _MISSING,
    *,
    choices: Sequence[str] | None = None,
    allow_none: bool = False,
    max_length: int = 200,
) -> Any:
    value = _get(config, key, loc, default)
    if value is None and (allow_none or default is None):
        return None
    if not isinstance(value, str):
        raise ConfigError((*loc, key), f"must be a string, got {value!r}")
    if len(value) > max_length:
        raise ConfigError((*loc, key), f"must be at most {max_length} characters")
    if choices is not None and value not in choices:
        raise ConfigError((*loc, key), f"must be one of {list(choices)}, got {value!r}")
    return value
