"""The artifact store: files under one root, written atomically (temp file, fsync, rename,
directory fsync), so a reader sees a whole file or none. Keys are relative POSIX paths made by
the service, never by users."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"artifact key escapes the store: {key!r}")
        return path

    def write(self, key: str, data: bytes) -> int:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        fsync_dir(path.parent)
        return len(data)

    def path(self, key: str) -> Path:
        """Where `key` lives, for readers that map a file rather than read it whole."""
        return self._path(key)

    def temp_path(self, prefix: str) -> Path:
        """A new, empty file under `incoming/`, for an upload being streamed in; the caller
        renames it into place or deletes it."""
        folder = self.root / "incoming"
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".tmp-{prefix}-")
        os.close(fd)
        return Path(tmp)

    def temp_dir(self, prefix: str) -> Path:
        folder = self.root / "incoming"
        folder.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=folder, prefix=f".tmp-{prefix}-"))

    def commit_dir(self, tmp: Path, key: str) -> None:
        """Move a folder of fsynced files into place as `key`, atomically, and make the rename
        durable."""
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fsync_dir(tmp)
        os.replace(tmp, path)
        fsync_dir(path.parent)

    def check_writable(self) -> None:
        """Create, write, fsync and delete a temporary file at the root (the readiness
        probe's check); raises OSError if the store cannot take a write."""
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".tmp-ready-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(b"ready")
                f.flush()
                os.fsync(f.fileno())
        finally:
            Path(tmp).unlink(missing_ok=True)

    def read(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def delete(self, key: str) -> None:
        """Delete one file; a missing one is no error."""
        self._path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> None:
        path = self._path(prefix)
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def fsync_dir(path: Path) -> None:
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def job_prefix(job_id: object) -> str:
    return f"jobs/{job_id}"


def job_data_key(job_id: object) -> str:
    return f"{job_prefix(job_id)}/inputs.safetensors"


def checkpoint_key(
    job_id: object, attempt: int, epoch: int, *, batch: int | None = None, final: bool = False
) -> str:
    """One file per (attempt, epoch) end; a mid-epoch save and the final checkpoint (whose
    weights may differ from the epoch end's, e.g. restored best weights) get their own."""
    tail = f"-b{batch:09d}" if batch is not None else ("-final" if final else "")
    return f"{job_prefix(job_id)}/checkpoints/a{attempt}-e{epoch:06d}{tail}.safetensors"
