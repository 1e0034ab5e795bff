"""`fitapi jobs list|get|watch|cancel|logs|resume`; `watch` (and `resume --follow`) exit with
the job's outcome."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from fitapi.cli import render
from fitapi.cli.follow import follow, outcome
from fitapi.cli.state import OutputOption, State, state

if TYPE_CHECKING:
    from rich.table import Table

    from fitapi.jobs import Job

app = typer.Typer(help="List, show, follow, cancel and resume jobs.", no_args_is_help=True)

JobId = Annotated[str, typer.Argument(metavar="JOB", help="The job's id")]


def tables(raw: dict[str, Any]) -> list[Table | str]:
    error = raw.get("error") or {}
    history = raw.get("history") or {}
    last = {k: v[-1] for k, v in history.items() if v}
    head = render.fields(
        None,
        [
            ("id", raw.get("id")),
            ("kind", raw.get("kind")),
            ("status", raw.get("status")),
            ("model", raw.get("model_id")),
            (
                "epochs",
                f"{raw.get('epochs_done')}/{raw.get('epochs')}"
                if raw.get("kind") == "fit"
                else None,
            ),
            ("attempt", f"{raw.get('attempt')}/{raw.get('max_attempts')}"),
            ("error", f"{error.get('type')}: {error.get('message')}" if error else None),
            ("last epoch", render.logs_text(last) if last else None),
            ("result", render.logs_text(raw["result"]) if raw.get("result") else None),
            ("result dataset", raw.get("result_dataset_id")),
            ("parent job", raw.get("parent_job_id")),
            ("created", render.when(raw.get("created_at"))),
            ("started", render.when(raw.get("started_at"))),
            ("finished", render.when(raw.get("finished_at"))),
        ],
    )
    return [head]


def show(st: State, job: Job) -> None:
    render.emit(st, job.raw, *tables(job.raw))


def watch_and_exit(st: State, job: Job) -> None:
    """Follow the job to its end; stdout gets the epoch lines (table) or the ended job (json);
    the exit status is the job's outcome."""
    ended = follow(st, job)
    if st.json:
        render.emit_json(st, ended.raw)
    raise typer.Exit(outcome(st, ended))


@app.command("list")
def list_(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Option(help="Only this model's jobs")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    output: OutputOption = None,
) -> None:
    """The jobs, newest first."""
    st = state(ctx, output)
    items = [j.raw for j in st.client.jobs.list(model_id=model, limit=limit, offset=offset)]
    table = render.listing(
        ["id", "kind", "status", "epochs", "model", "created"],
        [
            (
                j.get("id"),
                j.get("kind"),
                j.get("status"),
                f"{j.get('epochs_done')}/{j.get('epochs')}" if j.get("kind") == "fit" else "",
                j.get("model_id"),
                render.when(j.get("created_at")),
            )
            for j in items
        ],
    )
    render.emit(st, items, table)


@app.command()
def get(ctx: typer.Context, job_id: JobId, output: OutputOption = None) -> None:
    """A job's status, progress, error and last epoch's values (exits 0 whatever its status)."""
    st = state(ctx, output)
    show(st, st.client.jobs.get(job_id))


@app.command()
def watch(ctx: typer.Context, job_id: JobId, output: OutputOption = None) -> None:
    """Follow a job live, as `fit --follow` does; exits with its outcome."""
    st = state(ctx, output)
    watch_and_exit(st, st.client.jobs.get(job_id))


@app.command()
def cancel(ctx: typer.Context, job_id: JobId, output: OutputOption = None) -> None:
    """Cancel a job: a queued one ends at once, a running one between batches."""
    st = state(ctx, output)
    show(st, st.client.jobs.get(job_id).cancel())


@app.command()
def logs(
    ctx: typer.Context,
    job_id: JobId,
    after: Annotated[int | None, typer.Option(help="Only epochs after this one (0-based)")] = None,
    output: OutputOption = None,
) -> None:
    """One row per finished epoch (numbered from 1 here, from 0 in JSON, as the API does)."""
    st = state(ctx, output)
    rows = st.client.jobs.get(job_id).logs(after=after)
    names: list[str] = []
    for row in rows:
        names += [k for k, _ in render.ordered_logs(row.get("logs") or {}) if k not in names]
    table = render.listing(
        ["epoch", *names, "attempt"],
        [
            (
                row.get("epoch", 0) + 1,
                *(render.number((row.get("logs") or {}).get(n)) for n in names),
                row.get("attempt"),
            )
            for row in rows
        ],
    )
    render.emit(st, rows, table)


@app.command()
def resume(
    ctx: typer.Context,
    job_id: JobId,
    checkpoint: Annotated[
        str | None, typer.Option(help="latest (default), best, epoch:N or a checkpoint id")
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(min=1, help="Run to this epoch (default: the parent's)")
    ] = None,
    follow_: Annotated[bool, typer.Option("--follow", "-f", help="Follow it live")] = False,
    output: OutputOption = None,
) -> None:
    """Continue a finished job as a new fit job from one of its checkpoints."""
    st = state(ctx, output)
    job = st.client.jobs.get(job_id).resume(checkpoint=checkpoint, epochs=epochs)
    if follow_:
        watch_and_exit(st, job)
    show(st, job)
