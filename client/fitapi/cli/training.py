"""`fitapi fit` (a fit job from datasets or local .npy/.npz files, followed live with
`--follow`) and `fitapi predict` (an .npy/.npz file in, an .npy/.npz file out)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from fitapi.cli import inputs, render
from fitapi.cli.follow import follow, outcome
from fitapi.cli.jobs import show, watch_and_exit
from fitapi.cli.state import ExitCode, OutputOption, State, state
from fitapi.jobs import Job

NPY, NPZ = "application/x-npy", "application/x-npz"

ModelId = Annotated[str, typer.Argument(metavar="MODEL", help="The model's id")]


def fit(
    ctx: typer.Context,
    model: ModelId,
    data: Annotated[
        str,
        typer.Option(
            metavar="ID|FILE",
            help="A dataset id, or an .npz holding "
            "x and y (or an .npy of x, with --y); files are uploaded "
            "once (by content hash)",
        ),
    ],
    y: Annotated[
        str | None, typer.Option(metavar="ID|FILE", help="y, when --data is x alone")
    ] = None,
    epochs: Annotated[int, typer.Option(min=1)] = 1,
    batch_size: Annotated[int | None, typer.Option(min=1, help="default 32")] = None,
    validation_split: Annotated[float, typer.Option(min=0.0, max=0.99)] = 0.0,
    compile_file: Annotated[
        Path | None,
        typer.Option(
            "--compile",
            exists=True,
            dir_okay=False,
            metavar="FILE",
            help="The compile object as JSON (optimizer, loss, metrics, ...)",
        ),
    ] = None,
    optimizer: Annotated[str | None, typer.Option(help="An optimizer's name, e.g. adam")] = None,
    loss: Annotated[str | None, typer.Option(help="A loss's name")] = None,
    metrics: Annotated[
        list[str] | None, typer.Option(help="Metric names, comma-separated or repeated")
    ] = None,
    callbacks: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            metavar="FILE",
            help="A JSON list of {class_name, config} callbacks",
        ),
    ] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="Shuffle and dropout seed")] = None,
    shuffle: Annotated[bool, typer.Option(help="A new order each epoch")] = True,
    follow_: Annotated[
        bool,
        typer.Option(
            "--follow",
            "-f",
            help="Show live progress and wait for the end; the exit status is the job's outcome",
        ),
    ] = False,
    output: OutputOption = None,
) -> None:
    """Start a fit job (Keras's fit) on a model."""
    st = state(ctx, output)
    spec = inputs.compile_spec(compile_file, optimizer, loss, metrics)
    cbs = inputs.callbacks_spec(callbacks)
    x_ref, y_ref = inputs.training_refs(st, data, y)
    body: dict[str, Any] = {"x": x_ref, "y": y_ref, "epochs": epochs}
    optional = {
        "compile": spec,
        "callbacks": cbs,
        "batch_size": batch_size,
        "seed": seed,
        "validation_split": validation_split or None,
        "shuffle": None if shuffle else False,
    }
    body.update({k: v for k, v in optional.items() if v is not None})
    job = Job(st.client, st.client.post_json(f"/v1/models/{model}/fit", body))
    if not follow_:
        show(st, job)
        return
    if not st.json:
        st.err.print(f"fit job {job.id} {job.status}", soft_wrap=True, markup=False)
    watch_and_exit(st, job)


def predict(
    ctx: typer.Context,
    model: ModelId,
    data: Annotated[
        str,
        typer.Option(
            metavar="FILE|ID",
            help="An .npy (the one input) or .npz (arrays named by input), or a dataset id",
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            dir_okay=False,
            help="Where the predictions go: .npy, or "
            ".npz (one array per output; needed for several)",
        ),
    ],
    batch_size: Annotated[int | None, typer.Option(min=1)] = None,
    checkpoint: Annotated[
        str | None,
        typer.Option(help="Use this checkpoint's weights: latest, best, epoch:N or an id"),
    ] = None,
    job_id: Annotated[
        str | None,
        typer.Option("--job", help="The job whose checkpoint (default: the model's latest job)"),
    ] = None,
    output: OutputOption = None,
) -> None:
    """Predict: arrays in, arrays out (binary both ways)."""
    st = state(ctx, output)
    if out.suffix not in (".npy", ".npz"):
        raise typer.BadParameter("must end in .npy or .npz", param_hint="--out")
    accept = NPZ if out.suffix == ".npz" else f"{NPY}, {NPZ}"
    params = {"batch_size": batch_size, "checkpoint": checkpoint, "job_id": job_id}
    path = Path(data)
    if path.is_file():
        if path.suffix.lower() not in (".npy", ".npz"):
            raise typer.BadParameter("expected an .npy or .npz file", param_hint="--data")
        content_type = NPY if path.suffix.lower() == ".npy" else NPZ
        response = st.client.request(
            "POST",
            f"/v1/models/{model}/predict",
            params=params,
            content=path.read_bytes(),
            headers={"Content-Type": content_type, "Accept": accept},
        )
    elif inputs.is_id(data):
        body = {"x": {"dataset": data}, **{k: v for k, v in params.items() if v is not None}}
        response = st.client.request(
            "POST", f"/v1/models/{model}/predict", json=body, headers={"Accept": accept}
        )
    else:
        raise typer.BadParameter(
            f"{data!r} is neither a file nor a dataset id", param_hint="--data"
        )
    if response.status_code == 202:  # many rows: a predict job writes a dataset
        arrays = job_outputs(st, Job(st.client, response.json()))
    elif response.headers.get("content-type", "").startswith(NPZ):
        with np.load(io.BytesIO(response.content), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    else:
        arrays = {"predictions": np.load(io.BytesIO(response.content), allow_pickle=False)}
    write(st, out, arrays)


def job_outputs(st: State, job: Job) -> dict[str, np.ndarray]:
    """Wait for a predict job (progress on stderr) and download its result dataset."""
    ended = follow(st, job, lines=False)
    code = outcome(st, ended)
    if code is not ExitCode.OK:
        if st.json:
            render.emit_json(st, ended.raw)
        raise typer.Exit(code)
    dataset = st.client.datasets.get(str(ended.raw["result_dataset_id"]))
    return {str(a["name"]): dataset.download(str(a["name"])) for a in dataset.arrays}


def write(st: State, out: Path, arrays: dict[str, np.ndarray]) -> None:
    if out.suffix == ".npy" and len(arrays) != 1:
        raise typer.BadParameter(
            f"the model has {len(arrays)} outputs ({', '.join(arrays)}): name an .npz file",
            param_hint="--out",
        )
    try:
        with out.open("wb") as f:  # a file object: numpy appends no suffix
            if out.suffix == ".npy":
                np.save(f, next(iter(arrays.values())), allow_pickle=False)
            else:
                np.savez(f, **arrays)  # type: ignore[arg-type]
    except OSError as exc:
        raise typer.BadParameter(
            f"cannot write {out}: {exc.strerror}", param_hint="--out"
        ) from None
    summary = [
        {"name": k, "dtype": str(v.dtype), "shape": list(v.shape)} for k, v in arrays.items()
    ]
    table = render.listing(
        ["output", "dtype", "shape"],
        [(a["name"], a["dtype"], render.shape(a["shape"])) for a in summary],
    )
    render.emit(st, {"out": str(out), "arrays": summary}, f"wrote {out}", table)
