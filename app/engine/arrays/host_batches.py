"""Batches gathered from arrays that stay on disk (memory-mapped `.npy` files, a stored
dataset's rows): each batch's samples are read by index, moved to the device in their stored
dtype (a uint8 image batch moves a quarter of the bytes of float32) and cast there by
`cast_input`, so a batch equals the one the same arrays held in memory would give, bit for bit.

Rows are read with positional reads (`pread`) into a new buffer, not through the memory map:
touching scattered rows of a map makes the kernel map whole neighbourhoods of pages into the
process (a shuffled batch of 8,192 rows of 1 KiB mapped about 1 GB here), while a read leaves
them in the page cache, which the process's resident memory does not count. So a fit holds a
few batches, however large the files are. A worker thread reads the next batch while the
current one trains (pinned memory and a non-blocking copy on CUDA)."""

from __future__ import annotations

import mmap
import os
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from app.engine.arrays.checks import XY, Arrays, cast_input

Index = torch.Tensor | slice
IN_MEMORY_BYTES = 64 << 20


def is_mapped(data: XY) -> bool:
    """Whether any of `data`'s arrays is a memory map, read per batch rather than moved whole."""
    return any(isinstance(a, np.memmap) for a in [*data.x, *data.y, *data.sample_weight])


@dataclass
class FileRows:
    """Where a memory-mapped array's rows lie in its file."""

    fd: int
    offset: int  # of row 0
    row_bytes: int
    shape: tuple[int, ...]  # of one row
    dtype: np.dtype[Any]
    buffer: np.ndarray | None = None

    @classmethod
    def of(cls, a: np.memmap) -> FileRows:
        root: np.ndarray = a
        while isinstance(root.base, np.ndarray):
            root = root.base
        if not isinstance(root, np.memmap) or not isinstance(root.base, mmap.mmap):
            raise ValueError("not a view of a memory-mapped file")
        if not a.flags.c_contiguous:
            raise ValueError("rows of a memory map must be contiguous")
        offset = int(root.offset) + (a.ctypes.data - root.ctypes.data)
        row_bytes = a.itemsize * int(np.prod(a.shape[1:], dtype=np.int64))
        fd = os.open(str(root.filename), os.O_RDONLY)
        return cls(fd, offset, row_bytes, tuple(a.shape[1:]), a.dtype)

    def _buffer(self, rows: int) -> np.ndarray:
        """The reused read buffer, `rows` long (a batch is copied out of it before the next
        read starts, so one is enough; no allocation per batch)."""
        if self.buffer is None or self.buffer.shape[0] < rows:
            self.buffer = np.empty((rows, *self.shape), dtype=self.dtype)
        return self.buffer[:rows]

    def read(self, index: np.ndarray | slice, n: int) -> torch.Tensor:
        """Rows `index` (a slice, or row numbers) in the read buffer, as a CPU tensor valid
        until the next read."""
        if isinstance(index, slice):
            lo, hi, _ = index.indices(n)
            out = self._buffer(max(0, hi - lo))
            self._pread(_bytes(out), self.offset + lo * self.row_bytes)
        else:
            out = self._buffer(len(index))
            flat = _bytes(out)
            rb, fd, preadv = self.row_bytes, self.fd, os.preadv
            offsets = (index * rb + self.offset).tolist()
            for i, offset in enumerate(offsets):
                view = flat[i * rb : (i + 1) * rb]
                if preadv(fd, [view], offset) != rb:  # short: read the rest
                    self._pread(view, offset)
        return torch.from_numpy(out)

    def _pread(self, buf: memoryview, offset: int) -> None:
        done = 0
        while done < len(buf):
            got = os.preadv(self.fd, [buf[done:]], offset + done)
            if got <= 0:
                raise OSError(f"the dataset file ended {len(buf) - done} bytes early")
            done += got

    def close(self) -> None:
        os.close(self.fd)


def _bytes(a: np.ndarray) -> memoryview:
    """A writable byte view of a new C-contiguous array."""
    return memoryview(a.data).cast("B")


class HostBatches:
    """The `Arrays` interface (`size`, `take`, `prefetch`, `close`) over arrays on disk, for the
    fit loop, its validation, evaluate and predict. Arrays in memory among them (weights made
    from class_weight, inline labels) are indexed in memory."""

    def __init__(self, data: XY, device: torch.device, input_dtypes: Sequence[torch.dtype]) -> None:
        self.device = device
        self.n = int(data.x[0].shape[0])
        self.input_dtypes = list(input_dtypes)
        # The smallest arrays (labels, weights), up to IN_MEMORY_BYTES together, are read into
        # memory once: a few bytes a row are not worth a read each.
        budget, small = IN_MEMORY_BYTES, set()
        for a in sorted(
            (a for a in [*data.x, *data.y, *data.sample_weight] if isinstance(a, np.memmap)),
            key=lambda a: a.nbytes,
        ):
            if a.nbytes > budget:
                break
            budget -= a.nbytes
            small.add(id(a))
        self.x = [self._source(a, small) for a in data.x]
        self.y = [self._source(a, small) for a in data.y]
        self.sample_weight = [self._source(a, small) for a in data.sample_weight]
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="gather")
        self._pending: tuple[Any, Future[list[torch.Tensor | None]]] | None = None

    @staticmethod
    def _source(a: np.ndarray | None, small: set[int]) -> FileRows | torch.Tensor | None:
        if a is None:
            return None
        if isinstance(a, np.memmap) and id(a) not in small:
            return FileRows.of(a)
        return torch.from_numpy(np.array(a))  # a copy: torch keeps no read-only tensors

    @property
    def size(self) -> int:
        return self.n

    @staticmethod
    def _key(index: Index) -> Any:
        if isinstance(index, slice):
            return ("slice", index.start, index.stop)
        return ("index", index.data_ptr(), tuple(index.shape))

    def _read(self, index: Index) -> list[torch.Tensor | None]:
        """The batch's rows on the host, every source in order (x, y, sample weights): read on
        the worker thread. On CUDA they are copied into pinned memory here."""
        rows: np.ndarray | slice = (
            index.to("cpu", torch.int64).numpy() if isinstance(index, torch.Tensor) else index
        )
        pin = self.device.type == "cuda"
        parts: list[torch.Tensor | None] = []
        for source in [*self.x, *self.y, *self.sample_weight]:
            if source is None:
                parts.append(None)
                continue
            if isinstance(source, FileRows):
                part = source.read(rows, self.n)
            else:
                part = source[rows] if isinstance(rows, slice) else source[torch.from_numpy(rows)]
            parts.append(part.pin_memory() if pin else part)
        return parts

    def _finish(self, parts: list[torch.Tensor | None]) -> Arrays:
        """The host parts on the device, cast: done on the caller's thread, so the batch's
        memory is allocated and freed by one thread, and copied off the read buffers."""
        pin = self.device.type == "cuda"
        dtypes = [*self.input_dtypes, *[torch.float32] * (len(self.y) + len(self.sample_weight))]
        out: list[torch.Tensor | None] = []
        for part, dtype in zip(parts, dtypes, strict=True):
            if part is None:
                out.append(None)
                continue
            moved = cast_input(part.to(self.device, non_blocking=pin), dtype)
            if moved.data_ptr() == part.data_ptr():  # neither moved nor cast: still the buffer
                moved = moved.clone()
            out.append(moved)
        nx, ny = len(self.x), len(self.y)
        return Arrays([t for t in out[:nx] if t is not None], out[nx : nx + ny], out[nx + ny :])

    def _gather(self, index: Index) -> Arrays:
        return self._finish(self._read(index))

    def take(self, index: Index) -> Arrays:
        pending, self._pending = self._pending, None
        batch = None
        if pending is not None:
            key, future = pending
            ready = future.result()
            if key == self._key(index):
                batch = self._finish(ready)
        if batch is None:
            batch = self._gather(index)
        # Read on ahead: the next slice of the same length (the order of validation, evaluate,
        # predict and unshuffled fits); a shuffled fit's loop asks for its next batch itself.
        if isinstance(index, slice) and index.stop is not None and index.stop < self.n:
            self.prefetch(slice(index.stop, index.stop + index.stop - (index.start or 0)))
        return batch

    def prefetch(self, index: Index | None) -> None:
        """Start reading `index`, the batch the caller will take next."""
        if index is None:
            return
        if self._pending is not None:
            self._pending[1].result()
        self._pending = (self._key(index), self._pool.submit(self._read, index))

    def close(self) -> None:
        if self._pending is not None:
            self._pending[1].result()
            self._pending = None
        self._pool.shutdown(wait=True)
        for s in [*self.x, *self.y, *self.sample_weight]:
            if isinstance(s, FileRows):
                s.close()
