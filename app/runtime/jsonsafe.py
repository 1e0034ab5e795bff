"""Values that must survive JSON: in the database, in checkpoint headers, in responses and on
the event stream.

Keras logs a diverged fit's loss as `nan`; JSON has no NaN, so non-finite numbers in logs,
results and predictions are written as null. User-supplied JSON that will be stored (model
configs, compile specs, callbacks, names) must not carry NaN, infinities, NUL characters or lone
surrogates (which no UTF-8 text can hold) at all: that is a 422, found before anything is written.
Rows stored before that check are shown with such characters replaced (`readable`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from app.core.errors import InvalidInput

MAX_DEPTH = 64


def finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def safe_logs(logs: dict[str, float]) -> dict[str, float | None]:
    return {k: finite_or_none(float(v)) for k, v in logs.items()}


def safe_nested(value: Any) -> Any:
    """Nested lists of floats (predictions) with non-finite numbers as None."""
    if isinstance(value, list):
        return [safe_nested(v) for v in value]
    if isinstance(value, float):
        return finite_or_none(value)
    return value


def check_storable(value: Any, loc: Sequence[str | int], depth: int = 0) -> None:
    """Raise a 422 naming the place of a NaN, an infinity, a NUL character or a lone
    surrogate."""
    if depth > MAX_DEPTH:
        raise InvalidInput(f"nested deeper than {MAX_DEPTH} levels", loc=loc)
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInput("numbers must be finite (NaN or infinity found)", loc=loc)
    if isinstance(value, str) and "\x00" in value:
        raise InvalidInput("strings must not contain NUL characters", loc=loc)
    if isinstance(value, str) and not _is_utf8(value):
        raise InvalidInput("strings must not contain lone surrogates (not valid Unicode text)",
                           loc=loc)  # fmt: skip
    if isinstance(value, dict):
        for k, v in value.items():
            check_storable(k, [*loc, str(k)], depth + 1)
            check_storable(v, [*loc, str(k)], depth + 1)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            check_storable(v, [*loc, i], depth + 1)


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def readable(value: Any) -> Any:
    """`value` with lone surrogates in its strings replaced by U+FFFD, so that a row stored
    before `check_storable` refused them can still be sent as JSON."""
    if isinstance(value, str):
        return (
            value
            if _is_utf8(value)
            else value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        )
    if isinstance(value, dict):
        return {readable(k): readable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [readable(v) for v in value]
    return value
