"""Following a job: a live rich progress bar per epoch (the running loss and metrics from the
stream's `progress` events), one printed line per finished epoch with its val_ metrics, and the
exit code that the job's outcome gives.

The bars are drawn only on a terminal; captured output gets the epoch lines alone, one a line."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from fitapi.cli import render
from fitapi.cli.state import ExitCode, State

if TYPE_CHECKING:
    from fitapi.jobs import Job

OUTCOME = {
    "succeeded": ExitCode.OK,
    "failed": ExitCode.JOB_FAILED,
    "cancelled": ExitCode.JOB_CANCELLED,
}


class EpochBars:
    """One bar per running epoch, replaced by its printed line when the epoch's row lands."""

    def __init__(self, lines: Console, bars: Console, epochs: int | None) -> None:
        self.lines = lines
        self.epochs = epochs
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[logs]}"),
            console=bars,
            transient=True,
            disable=not bars.is_terminal,
        )
        self.tasks: dict[int, TaskID] = {}

    def __enter__(self) -> EpochBars:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def head(self, epoch: int) -> str:
        return f"Epoch {epoch + 1}/{self.epochs}" if self.epochs else f"Epoch {epoch + 1}"

    def on_progress(self, data: dict[str, Any]) -> None:
        epoch, steps = int(data.get("epoch", 0)), data.get("steps")
        self.epochs = data.get("epochs") or self.epochs
        logs = render.logs_text(data.get("logs") or {})
        if epoch not in self.tasks:
            self.tasks[epoch] = self.progress.add_task(self.head(epoch), total=steps, logs="")
        self.progress.update(
            self.tasks[epoch], total=steps, completed=int(data.get("batch", 0)) + 1, logs=logs
        )

    def on_epoch(self, data: dict[str, Any]) -> None:
        epoch = int(data.get("epoch", 0))
        task = self.tasks.pop(epoch, None)
        if task is not None:
            self.progress.remove_task(task)
            self.progress.refresh()  # else the line is printed above the bar's last frame
        line = render.epoch_line(
            epoch, self.epochs, data.get("logs") or {}, int(data.get("attempt") or 1)
        )
        # Through the bars' console when it is the same stream, so that the bars stay below;
        # soft_wrap: one line per epoch however narrow the terminal or captured output.
        self.lines.print(line, soft_wrap=True, markup=False, highlight=False)


def follow(st: State, job: Job, *, lines: bool = True) -> Job:
    """Stream the job's events until it ends; return it as it ended. In json mode (or with
    `lines=False`) the epoch lines go to stderr, keeping stdout for the one document."""
    out = st.err if (st.json or not lines) else st.out
    # The bars go where a person watches: stdout on a terminal, else stderr if that is one.
    bars_to = out if out.is_terminal else st.err
    epochs = job.raw.get("epochs") if isinstance(job.raw.get("epochs"), int) else None
    try:
        with EpochBars(out, bars_to, epochs) as bars:
            for event in job.events():
                if event.event == "progress":
                    bars.on_progress(event.data)
                elif event.event == "epoch":
                    bars.on_epoch(event.data)
                elif event.event == "status":
                    break
    except KeyboardInterrupt:
        st.err.print(
            f"stopped following; job {job.id} goes on (fitapi jobs watch {job.id})",
            soft_wrap=True,
            markup=False,
        )
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    return job.refresh()


def outcome(st: State, job: Job) -> ExitCode:
    """A note on stderr saying how the job ended, and the exit code for it."""
    raw = job.raw
    status = str(raw.get("status"))
    code = OUTCOME.get(status, ExitCode.OK)
    if not st.json:
        done = raw.get("epochs_done")
        note = f"job {job.id} {status}" + (
            f" after {done} epochs" if raw.get("kind") == "fit" else ""
        )
        error = raw.get("error") or {}
        if error:
            note += f": {error.get('type')}: {error.get('message')}"
        st.err.print(note, style="red" if code else "green", soft_wrap=True, markup=False)
    return code
