"""Which of a job's checkpoints `best` names: the monitor and mode of the job's (first)
ModelCheckpoint callback, which its checkpoints record, else `val_loss` (min) when some
checkpoint logged it, else `loss` (min); ties go to the earliest. Shared by the checkpoint
selectors (app.models.checkpoints) and by the jobs domain's pruning of periodic checkpoints,
which keeps the one `best` names."""

from __future__ import annotations

from collections.abc import Sequence

from app.db.models import CheckpointRow


def selection(rows: Sequence[CheckpointRow]) -> tuple[str, str]:
    """The (monitor, mode) that selects `best` among a job's checkpoints."""
    for row in rows:
        if row.monitor is not None and row.mode is not None:
            return row.monitor, row.mode
    if any(row.logs.get("val_loss") is not None for row in rows):
        return "val_loss", "min"
    return "loss", "min"


def best(ordered: Sequence[CheckpointRow]) -> CheckpointRow | None:
    """The earliest of `ordered` with the best monitored value; None if no row logged it."""
    monitor, mode = selection(ordered)
    found: CheckpointRow | None = None
    found_value = 0.0
    for row in ordered:
        value = row.logs.get(monitor)
        if value is None:  # not logged here, or not finite (stored as null)
            continue
        better = value > found_value if mode == "max" else value < found_value
        if found is None or better:
            found, found_value = row, value
    return found
