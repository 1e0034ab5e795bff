"""What every domain's request schemas share: the strict configuration (unknown fields,
NaN/Infinity and loose coercions such as "1" for a number or "yes" for a boolean are errors) and
the same with an OpenAPI example."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    # Unknown fields are errors, NaN/Infinity are refused in every number field, and no field
    # coerces across JSON types (a field that must parse a string, such as a UUID, says so).
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)


def strict_with_example(example: dict[str, Any]) -> ConfigDict:
    """Strict's configuration, with `example` as the body's example in the OpenAPI document."""
    return ConfigDict(
        extra="forbid", allow_inf_nan=False, strict=True, json_schema_extra={"examples": [example]}
    )


def with_example(example: dict[str, Any]) -> ConfigDict:
    """A response schema's configuration: `example` as its example in the OpenAPI document."""
    return ConfigDict(json_schema_extra={"examples": [example]})
