"""What every domain's request schemas share: the strict configuration (unknown fields and
NaN/Infinity are errors) and the same with an OpenAPI example."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    # Unknown fields are errors, and NaN/Infinity are refused in every number field.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


def strict_with_example(example: dict[str, Any]) -> ConfigDict:
    """Strict's configuration, with `example` as the body's example in the OpenAPI document."""
    return ConfigDict(
        extra="forbid", allow_inf_nan=False, json_schema_extra={"examples": [example]}
    )
