"""The sweeper: removes artifact files that no row references once they are older than a grace
period (SWEEP_GRACE_S), and logs each removal. Orphans come from a crash between a commit and
the delete that follows it (a replaced weights file, a deleted model's folder), or between a
write and the commit that would have registered it (an unregistered checkpoint, a job's inputs
of a submission that failed, a half-converted upload under `incoming/`).

Every write puts its file in place before its row commits, so a file younger than the grace
period may be about to be registered: only older ones are candidates. The age of a folder (a
dataset, a temp folder) is that of its newest file, so a folder still being written is young.
The store is listed before the rows are read: a file that was unreferenced and old when the
rows were read can only become referenced again by a new write, which makes it young.

Several processes may sweep the same store at once: a file goes with one `unlink` and a folder
is first claimed by renaming it, so each removal happens, and is logged, once. Only the areas
the service writes (`models/`, `jobs/`, `datasets/`, `incoming/`) are looked at: anything else
under the store's root is left alone."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from app.datasets.layout import dataset_prefix
from app.db.references import referenced_artifacts
from app.db.session import unit_of_work
from app.runtime.context import AppContext

log = logging.getLogger(__name__)

# Areas of single files, each referenced by its key.
FILE_AREAS = ("models", "jobs")
# Areas of folders: a dataset's (referenced by its id), temp folders and files (never).
DATASETS, INCOMING = "datasets", "incoming"
# A claimed folder is renamed `.sweep-<unix time>-<random>`: another sweeper leaves it to its
# claimer unless the claim is older than the grace period (its claimer died mid-removal).
CLAIMED = ".sweep-"


@dataclass(frozen=True)
class Removed:
    key: str
    size_bytes: int


@dataclass(frozen=True)
class _Candidate:
    key: str
    folder: bool

    def referenced(self, keys: frozenset[str]) -> bool:
        return not self.key.startswith(f"{INCOMING}/") and self.key in keys


def sweep(ctx: AppContext) -> list[Removed]:
    """One pass over the store: what it removed."""
    root = ctx.store.root
    cutoff = time.time() - ctx.settings.sweep_grace_s
    candidates = list(_old_entries(root, cutoff))
    if not candidates:
        return []
    with unit_of_work(ctx.sessions) as session:
        refs = referenced_artifacts(session)
    keys = refs.keys | {dataset_prefix(i) for i in refs.dataset_ids}
    removed = []
    for candidate in candidates:
        if candidate.referenced(keys):
            continue
        size = _remove(root, candidate, cutoff)
        if size is not None:
            log.info("swept %s (%d bytes): no row references it", candidate.key, size)
            removed.append(Removed(candidate.key, size))
    for area in FILE_AREAS:
        _prune_empty_folders(root / area, cutoff)
    if removed:
        log.info("swept %d orphaned artifacts, %d bytes", len(removed),
                 sum(r.size_bytes for r in removed))  # fmt: skip
    return removed


class Sweeper:
    """Runs `sweep` from the reaper's loop every SWEEP_INTERVAL_S (0: never), first on the
    loop's first pass, so that a restart after a crash cleans up soon."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.next_at = time.monotonic()

    def run_if_due(self) -> None:
        interval = self.ctx.settings.sweep_interval_s
        if interval <= 0 or time.monotonic() < self.next_at:
            return
        self.next_at = time.monotonic() + interval
        try:
            sweep(self.ctx)
        except Exception:
            log.exception("sweeper pass failed")


def _old_entries(root: Path, cutoff: float) -> Iterator[_Candidate]:
    for area in FILE_AREAS:
        for folder, _dirs, files in os.walk(root / area):
            for name in files:
                path = Path(folder, name)
                mtime = _mtime(path)
                if mtime is not None and mtime < cutoff:
                    yield _Candidate(path.relative_to(root).as_posix(), folder=False)
    for area in (DATASETS, INCOMING):
        try:
            entries = list(os.scandir(root / area))
        except FileNotFoundError:
            continue
        for entry in entries:
            if entry.name.startswith(CLAIMED) and not _stale_claim(entry.name, cutoff):
                continue
            newest = _newest_mtime(Path(entry.path))
            if newest is not None and newest < cutoff:
                yield _Candidate(f"{area}/{entry.name}", folder=True)


def _stale_claim(name: str, cutoff: float) -> bool:
    try:
        return int(name.removeprefix(CLAIMED).split("-")[0]) < cutoff
    except ValueError:
        return True


def _mtime(path: Path) -> float | None:
    try:
        st = path.lstat()
    except FileNotFoundError:  # removed meanwhile (by its owner or another sweeper)
        return None
    return st.st_mtime


def _newest_mtime(path: Path) -> float | None:
    newest = _mtime(path)
    if newest is None or not path.is_dir() or path.is_symlink():
        return newest
    for folder, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            mtime = _mtime(Path(folder, name))
            if mtime is not None:
                newest = max(newest, mtime)
    return newest


def _remove(root: Path, candidate: _Candidate, cutoff: float) -> int | None:
    """Bytes removed, or None when the entry is gone, or was written again, meanwhile."""
    path = root / candidate.key
    if not candidate.folder:
        try:
            st = path.lstat()
            if st.st_mtime >= cutoff:
                return None
            path.unlink()  # only one of several sweepers succeeds
        except FileNotFoundError:
            return None
        return st.st_size
    claimed = path.with_name(f"{CLAIMED}{int(time.time())}-{uuid.uuid4().hex}")
    try:
        os.rename(path, claimed)  # only one of several sweepers succeeds
    except FileNotFoundError:
        return None
    size = _size(claimed)
    if claimed.is_dir() and not claimed.is_symlink():
        shutil.rmtree(claimed, ignore_errors=True)
    else:
        claimed.unlink(missing_ok=True)
    return size


def _size(path: Path) -> int:
    if not path.is_dir() or path.is_symlink():
        return path.lstat().st_size
    total = 0
    for folder, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(FileNotFoundError):
                total += Path(folder, name).lstat().st_size
    return total


def _prune_empty_folders(area: Path, cutoff: float) -> None:
    # Bottom-up, never the area itself. An empty folder untouched for the grace period belongs
    # to no writer: every write creates its folder (or adds a file to it) just before use.
    for folder, _dirs, _files in os.walk(area, topdown=False):
        path = Path(folder)
        if path == area:
            continue
        mtime = _mtime(path)
        if mtime is None or mtime >= cutoff:
            continue
        with contextlib.suppress(OSError):  # not empty (a file arrived meanwhile), or gone
            path.rmdir()
