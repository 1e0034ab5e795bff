"""Receiving an upload: the request body streamed to a file in the artifact store while its
sha256 is computed, never held whole in memory, with the size limit enforced as it arrives.
The rate is logged."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from app.core.errors import PayloadTooLarge

log = logging.getLogger(__name__)
FLUSH_BYTES = 4 << 20  # written (and hashed) off the event loop in pieces this large
LOG_EVERY_S = 10.0


@dataclass(frozen=True)
class Received:
    path: Path
    size: int
    sha256: str
    head: bytes  # the first bytes, to recognise the format


async def receive(chunks: AsyncIterator[bytes], path: Path, *, max_bytes: int) -> Received:
    """Stream `chunks` into `path` (fsynced at the end). Over `max_bytes` raises
    PayloadTooLarge as soon as the limit is crossed; the caller removes the file.

    Hashing and writing run on a worker thread, a few MB at a time, while the event loop
    receives the next piece: the two overlap, and no piece is copied on the way."""
    digest = hashlib.sha256()
    size, head = 0, b""
    pending: list[bytes] = []
    pending_bytes = 0
    started = last_log = time.monotonic()
    loop = asyncio.get_running_loop()
    writer = ThreadPoolExecutor(1, thread_name_prefix="upload")
    in_flight: asyncio.Future[None] | None = None

    def flush(f: BinaryIO, pieces: list[bytes]) -> None:
        for piece in pieces:
            digest.update(piece)
        f.writelines(pieces)

    try:
        with path.open("wb") as f:
            async for chunk in chunks:
                if not chunk:
                    continue
                size += len(chunk)
                if size > max_bytes:
                    raise PayloadTooLarge(
                        f"the upload exceeds the dataset limit of {max_bytes} bytes", loc=["body"]
                    )
                if len(head) < 16:
                    head += chunk[: 16 - len(head)]
                pending.append(chunk)
                pending_bytes += len(chunk)
                if pending_bytes >= FLUSH_BYTES:
                    if in_flight is not None:
                        await in_flight
                    in_flight = loop.run_in_executor(writer, flush, f, pending)
                    pending, pending_bytes = [], 0
                now = time.monotonic()
                if now - last_log >= LOG_EVERY_S:
                    last_log = now
                    log.info("dataset upload: %d MB so far, %.1f MB/s", size >> 20,
                             size / 1e6 / (now - started))  # fmt: skip
            if in_flight is not None:
                await in_flight
                in_flight = None
            await loop.run_in_executor(writer, flush, f, pending)
            await loop.run_in_executor(writer, _sync, f)
    finally:
        if in_flight is not None:
            with contextlib.suppress(Exception):
                await in_flight
        writer.shutdown(wait=False)
    elapsed = max(time.monotonic() - started, 1e-9)
    log.info("dataset upload received: %d bytes in %.2f s (%.1f MB/s)", size, elapsed,
             size / 1e6 / elapsed)  # fmt: skip
    return Received(path=path, size=size, sha256=digest.hexdigest(), head=head)


def _sync(f: BinaryIO) -> None:
    f.flush()
    os.fsync(f.fileno())


CONTENT_TYPES = {
    "application/x-npy": "npy", "application/npy": "npy",
    "application/x-npz": "npz", "application/npz": "npz", "application/zip": "npz",
    "text/csv": "csv", "application/csv": "csv",
    "application/vnd.apache.parquet": "parquet", "application/x-parquet": "parquet",
    "application/parquet": "parquet",
    "application/json": "json",
}  # fmt: skip
MAGIC = ((b"\x93NUMPY", "npy"), (b"PK\x03\x04", "npz"), (b"PAR1", "parquet"))


def format_of(given: str | None, content_type: str | None, head: bytes) -> str | None:
    """The upload's format: `?format=`, else the Content-Type, else (for
    application/octet-stream or none) the file's magic bytes; None when nothing tells."""
    if given is not None:
        return given
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media in CONTENT_TYPES:
        return CONTENT_TYPES[media]
    for magic, fmt in MAGIC:
        if head.startswith(magic):
            return fmt
    return None
