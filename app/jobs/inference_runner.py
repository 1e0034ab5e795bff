"""What a worker runs for a predict or evaluate job (batch inference over more rows than a
request answers at once). The inputs are read a batch at a time (a dataset's rows from disk);
a predict job writes each output to a new dataset, batch by batch, durable before the dataset's
row, the job's link to it and its `succeeded` status commit together; an evaluate job stores its
loss and metrics in the job."""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import uuid
from pathlib import Path

from app.datasets import repository as datasets_repo
from app.datasets.conversion import ConvertLimits, FormatError
from app.datasets.layout import dataset_prefix
from app.datasets.npywriter import Outputs
from app.datasets.refs import open_refs
from app.datasets.service import array_record
from app.db.models import DatasetRow, JobRow, JobStatus
from app.db.scope import SYSTEM
from app.db.session import unit_of_work
from app.engine.arrays.checks import XY
from app.engine.config.errors import DataError, TrainingInterrupted
from app.engine.models.model import Model
from app.engine.training.compile import CompileSpec
from app.engine.training.inference import model_inputs, predict_batches, resolve_device
from app.engine.training.trainer import Trainer
from app.jobs import repository as repo
from app.jobs.heartbeat import Heartbeat
from app.jobs.inputs import read_inputs
from app.jobs.spec import EvaluateJobSpec, InferenceJobSpec, PredictJobSpec
from app.models import repository as models_repo
from app.models.loading import build_model, load_weights
from app.runtime.context import AppContext
from app.runtime.jsonsafe import safe_logs

log = logging.getLogger(__name__)
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def output_array_names(model: Model) -> list[str]:
    """The result dataset's array names: the output names, where they are valid array names
    (else `output_<i>`)."""
    return [n if NAME.match(n) else f"output_{i}" for i, n in enumerate(model.output_names)]


def _inputs(ctx: AppContext, job: JobRow, spec: InferenceJobSpec) -> XY:
    arrays = read_inputs(ctx.store, job.data_key)
    arrays.update(open_refs(ctx, spec.data_refs))
    data = XY.from_arrays(arrays, spec.inputs, spec.outputs)
    assert data is not None
    return data


def run_inference(ctx: AppContext, job: JobRow, attempt: int, heartbeat: Heartbeat) -> None:
    with unit_of_work(ctx.sessions) as session:
        model_row = models_repo.get_model(session, model_id=job.model_id, scope=SYSTEM)
    if model_row is None:
        raise LookupError(f"the model of job {job.id} no longer exists")
    device = resolve_device(ctx.settings.device)
    model = build_model(ctx.settings, model_row.config, model_row.seed)
    load_weights(ctx.store, model, job.base_weights_key).to(device)
    if job.kind == "evaluate":
        evaluate = EvaluateJobSpec.from_request(job.request)
        data = _inputs(ctx, job, evaluate)
        spec = CompileSpec.parse(evaluate.compile, ("compile",))
        trainer = Trainer(model, spec, device=device)
        one = len(data.x) == 1
        logs = trainer.evaluate(
            data.x[0] if one else data.x,
            data.y[0] if one else data.y,
            sample_weight=data.sample_weight[0] if one else data.sample_weight,
            batch_size=evaluate.batch_size,
        )
        with unit_of_work(ctx.sessions) as session:
            if not repo.finish_job(
                session,
                job_id=job.id,
                attempt=attempt,
                status=JobStatus.succeeded,
                result=safe_logs(logs),
            ):
                # Stale, or cancelled before this commit (the runner tells which).
                raise TrainingInterrupted("lost")
        return
    predict = PredictJobSpec.from_request(job.request)
    _predict(ctx, job, attempt, heartbeat, model, _inputs(ctx, job, predict), predict)


def _predict(
    ctx: AppContext,
    job: JobRow,
    attempt: int,
    heartbeat: Heartbeat,
    model: Model,
    data: XY,
    spec: PredictJobSpec,
) -> None:
    dataset_id = uuid.uuid4()
    out_dir = ctx.store.temp_dir("predict")
    outputs = Outputs(out_dir, ConvertLimits(max_bytes=ctx.settings.dataset_max_bytes))
    names = output_array_names(model)
    xs = model_inputs(model, data.x[0] if len(data.x) == 1 else data.x, ())
    writers = None
    rows = 0
    committed = False
    try:
        for part in predict_batches(
            model, xs, batch_size=spec.batch_size, dtype_policy=spec.dtype_policy
        ):
            reason = heartbeat.interruption()
            if reason is not None:
                raise TrainingInterrupted(reason)
            if writers is None:
                writers = [
                    outputs.writer(n, p.dtype, tuple(p.shape[1:]))
                    for n, p in zip(names, part, strict=True)
                ]
            for w, p in zip(writers, part, strict=True):
                w.write(p)
            rows += len(part[0])
        assert writers is not None
        infos = [w.finish(rows) for w in writers]
        outputs.commit()
        sha = _sha256([out_dir / f"{i.name}.npy" for i in sorted(infos, key=lambda i: i.name)])
        ctx.store.commit_dir(out_dir, dataset_prefix(dataset_id))
        committed = True
        size = sum(i.nbytes for i in infos)
        with unit_of_work(ctx.sessions) as session:
            datasets_repo.add_dataset(
                session,
                row=DatasetRow(
                    id=dataset_id,
                    name=f"predictions of job {job.id}",
                    format="predict",
                    sha256=sha,
                    size_bytes=size,
                    stored_bytes=size,
                    arrays=[array_record(i) for i in infos],
                    source_job_id=job.id,
                    project_id=job.project_id,
                ),
            )
            if not repo.finish_job(
                session,
                job_id=job.id,
                attempt=attempt,
                status=JobStatus.succeeded,
                result_dataset_id=dataset_id,
            ):
                # Stale, or cancelled before this commit: its dataset goes too.
                raise TrainingInterrupted("lost")
    except FormatError as exc:  # non-finite predictions (weights that diverged)
        outputs.discard()
        shutil.rmtree(out_dir, ignore_errors=True)
        raise DataError(("x",), f"the predictions are not storable: {exc.message}") from exc
    except BaseException:
        outputs.discard()
        shutil.rmtree(out_dir, ignore_errors=True)
        if committed:
            ctx.store.delete_prefix(dataset_prefix(dataset_id))
        raise


def _sha256(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as f:
            while chunk := f.read(4 << 20):
                digest.update(chunk)
    return digest.hexdigest()
