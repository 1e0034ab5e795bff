"""Responses the routes share: a file download."""

from __future__ import annotations

from fastapi import Response

OCTET = "application/octet-stream"


def attachment(data: bytes, filename: str) -> Response:
    """`data` as a download named `filename`."""
    disposition = f'attachment; filename="{filename}"'
    return Response(data, media_type=OCTET, headers={"Content-Disposition": disposition})
