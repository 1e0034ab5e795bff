"""`fitapi datasets upload|list|get|delete`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fitapi.cli import render
from fitapi.cli.state import OutputOption, state

if TYPE_CHECKING:
    from rich.table import Table

app = typer.Typer(help="Upload, list, show and delete datasets.", no_args_is_help=True)

FORMATS = (".npy", ".npz", ".csv", ".parquet", ".json")


def tables(raw: dict[str, Any]) -> list[Table | str]:
    head = render.fields(
        None,
        [
            ("id", raw.get("id")),
            ("name", raw.get("name")),
            ("format", raw.get("format")),
            ("size", render.size(raw.get("size_bytes"))),
            ("sha256", raw.get("sha256")),
            ("source job", raw.get("source_job_id")),
            ("created", render.when(raw.get("created_at"))),
        ],
    )
    arrays = render.listing(
        ["array", "dtype", "shape", "min", "max"],
        [
            (
                a.get("name"),
                a.get("dtype"),
                render.shape(a.get("shape")),
                render.number(a.get("min")),
                render.number(a.get("max")),
            )
            for a in raw.get("arrays") or []
        ],
    )
    return [head, arrays]


def arrays_text(raw: dict[str, Any]) -> str:
    return ", ".join(
        f"{a.get('name')} {a.get('dtype')} {render.shape(a.get('shape'))}"
        for a in raw.get("arrays") or []
    )


@app.command()
def upload(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, readable=True, help=f"One of {', '.join(FORMATS)}"
        ),
    ],
    name: Annotated[str | None, typer.Option(help="A name to keep with it")] = None,
    label: Annotated[
        str | None, typer.Option(help="CSV/Parquet: the column that becomes y")
    ] = None,
    output: OutputOption = None,
) -> None:
    """Upload a file as a dataset (skipped when the same bytes are already stored)."""
    st = state(ctx, output)
    if file.suffix.lower() not in FORMATS:
        raise typer.BadParameter(f"expected one of {', '.join(FORMATS)}", param_hint="FILE")
    if label is not None and file.suffix.lower() not in (".csv", ".parquet"):
        raise typer.BadParameter("only for a .csv or .parquet file", param_hint="--label")
    kwargs: dict[str, Any] = {"name": name}
    if label is not None:
        kwargs["label"] = label
    dataset = st.client.datasets.upload(str(file), **kwargs)
    render.emit(st, dataset.raw, *tables(dataset.raw))


@app.command("list")
def list_(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    output: OutputOption = None,
) -> None:
    """The datasets, newest first."""
    st = state(ctx, output)
    items = [d.raw for d in st.client.datasets.list(limit=limit, offset=offset)]
    table = render.listing(
        ["id", "name", "format", "size", "arrays", "created"],
        [
            (
                d.get("id"),
                d.get("name"),
                d.get("format"),
                render.size(d.get("size_bytes")),
                arrays_text(d),
                render.when(d.get("created_at")),
            )
            for d in items
        ],
    )
    render.emit(st, items, table)


@app.command()
def get(
    ctx: typer.Context,
    dataset_id: Annotated[str, typer.Argument(metavar="DATASET", help="The dataset's id")],
    output: OutputOption = None,
) -> None:
    """One dataset: its arrays' names, dtypes, shapes and ranges."""
    st = state(ctx, output)
    raw = st.client.datasets.get(dataset_id).raw
    render.emit(st, raw, *tables(raw))


@app.command()
def delete(
    ctx: typer.Context,
    dataset_id: Annotated[str, typer.Argument(metavar="DATASET", help="The dataset's id")],
    output: OutputOption = None,
) -> None:
    """Delete a dataset (refused while a queued or running job reads it)."""
    st = state(ctx, output)
    st.client.datasets.delete(dataset_id)
    render.emit(st, {"id": dataset_id, "deleted": True}, f"deleted dataset {dataset_id}")
