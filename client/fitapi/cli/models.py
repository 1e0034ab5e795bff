"""`fitapi models create|list|get|delete`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from fitapi.cli import render
from fitapi.cli.state import OutputOption, state

if TYPE_CHECKING:
    from rich.table import Table

app = typer.Typer(help="Create, list, show and delete models.", no_args_is_help=True)


def tables(raw: dict[str, Any]) -> list[Table | str]:
    summary = raw.get("summary") or {}
    compiled = raw.get("compile") or {}
    head = render.fields(
        None,
        [
            ("id", raw.get("id")),
            ("name", raw.get("name")),
            ("kind", summary.get("kind")),
            ("seed", raw.get("seed")),
            ("weights", raw.get("weights")),
            (
                "compiled",
                ", ".join(
                    f"{k}={v}" for k, v in compiled.items() if k in ("optimizer", "loss", "metrics")
                ),
            ),
            (
                "params",
                f"{summary.get('total_params', 0):,} "
                f"({summary.get('trainable_params', 0):,} trainable)",
            ),
            ("created", render.when(raw.get("created_at"))),
        ],
    )
    layers = render.listing(
        ["layer", "class", "output shape", "params"],
        [
            (
                layer.get("name"),
                layer.get("class_name"),
                render.shape(layer.get("output_shape")),
                f"{layer.get('params', 0):,}",
            )
            for layer in summary.get("layers") or []
        ],
    )
    return [head, layers]


@app.command()
def create(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(
            exists=True,
            dir_okay=False,
            readable=True,
            help="model.json (Keras's to_json()) or model.keras",
        ),
    ],
    name: Annotated[str | None, typer.Option(help="The model's name")] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="Fixes the initial weights")] = None,
    output: OutputOption = None,
) -> None:
    """Create a model from a Keras JSON file or a .keras file."""
    st = state(ctx, output)
    if file.suffix.lower() not in (".json", ".keras"):
        raise typer.BadParameter("expected a .json or .keras file", param_hint="FILE")
    model = st.client.models.create(str(file), name=name, seed=seed)
    render.emit(st, model.raw, *tables(model.raw))


@app.command("list")
def list_(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, max=500)] = 50,
    offset: Annotated[int, typer.Option(min=0)] = 0,
    output: OutputOption = None,
) -> None:
    """The models, newest first."""
    st = state(ctx, output)
    items = [m.raw for m in st.client.models.list(limit=limit, offset=offset)]
    table = render.listing(
        ["id", "name", "kind", "params", "weights", "created"],
        [
            (
                m.get("id"),
                m.get("name"),
                (m.get("summary") or {}).get("kind"),
                f"{(m.get('summary') or {}).get('total_params', 0):,}",
                m.get("weights"),
                render.when(m.get("created_at")),
            )
            for m in items
        ],
    )
    render.emit(st, items, table)


@app.command()
def get(
    ctx: typer.Context,
    model_id: Annotated[str, typer.Argument(metavar="MODEL", help="The model's id")],
    output: OutputOption = None,
) -> None:
    """One model: its summary, layer by layer."""
    st = state(ctx, output)
    raw = st.client.models.get(model_id).raw
    render.emit(st, raw, *tables(raw))


@app.command()
def delete(
    ctx: typer.Context,
    model_id: Annotated[str, typer.Argument(metavar="MODEL", help="The model's id")],
    output: OutputOption = None,
) -> None:
    """Delete a model with its jobs and files (refused while a job runs)."""
    st = state(ctx, output)
    st.client.models.delete(model_id)
    render.emit(st, {"id": model_id, "deleted": True}, f"deleted model {model_id}")
