"""Reading Server-Sent Events chunks in tests."""

from __future__ import annotations

import json
from typing import Any


def parse_events(chunks: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """(event name, decoded data) of each chunk that names an event; comments and the retry
    line are skipped."""
    out = []
    for chunk in chunks:
        lines = dict(line.split(": ", 1) for line in chunk.strip().splitlines() if ": " in line)
        if "event" in lines:
            out.append((lines["event"], json.loads(lines["data"])))
    return out
