"""A progress bar for uploads on stderr: rich's when rich is installed and stderr is a
terminal, else a one-line bar; nothing when stderr is not a terminal unless asked for."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import Any


def wanted(progress: bool | None) -> bool:
    if progress is not None:
        return progress
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def tracked(chunks: Iterator[bytes], total: int, label: str, show: bool) -> Iterator[bytes]:
    """`chunks`, passed through, drawing the bar as they are sent."""
    if not show:
        yield from chunks
        return
    try:
        if not sys.stderr.isatty():  # asked for off a terminal (a log file): the plain bar
            raise ImportError
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TransferSpeedColumn,
        )
    except ImportError:
        yield from _plain(chunks, total, label)
        return
    columns: list[Any] = [
        "[progress.description]{task.description}", BarColumn(), DownloadColumn(),
        TransferSpeedColumn(),
    ]  # fmt: skip
    with Progress(*columns, transient=True, console=Console(stderr=True)) as bar:
        task = bar.add_task(label, total=total)
        for chunk in chunks:
            yield chunk
            bar.advance(task, len(chunk))


def _plain(chunks: Iterator[bytes], total: int, label: str) -> Iterator[bytes]:
    start = last = time.monotonic()
    done = 0
    width = 30
    for chunk in chunks:
        yield chunk
        done += len(chunk)
        now = time.monotonic()
        if now - last < 0.1 and done < total:
            continue
        last = now
        filled = int(width * done / total) if total else width
        rate = done / max(now - start, 1e-6)
        sys.stderr.write(
            f"\r{label} [{'#' * filled}{'.' * (width - filled)}] "
            f"{_size(done)}/{_size(total)} {_size(rate)}/s"
        )
        sys.stderr.flush()
    sys.stderr.write("\n")
    sys.stderr.flush()
