"""Reading a Prometheus scrape in tests, with the client library's own parser."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(scraped: dict[str, Any], sample: str, **labels: str) -> float:
    """The sum of `sample`'s values whose labels include `labels` (0 when there are none)."""
    total = 0.0
    for family in scraped.values():
        for s in family.samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total
