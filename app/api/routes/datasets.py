"""Routes of /v1/datasets: upload (streamed to the artifact store), list, read, download an
array as `.npy`, delete."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Path, Query, Request, Response, status
from fastapi.responses import FileResponse
from starlette.requests import ClientDisconnect

from app.api.auth import Caller
from app.api.deps import Ctx
from app.api.errors import ErrorOut
from app.api.middleware import BodyTooLarge
from app.core.errors import InvalidInput, PayloadTooLarge
from app.datasets import service
from app.datasets.schemas import DatasetList, DatasetOut, dataset_out
from app.datasets.upload import CONTENT_TYPES, receive
from app.datasets.upload import format_of as upload_format
from app.db.models import DatasetRow

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])
NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
SHA256 = r"^[0-9a-f]{64}$"
E404: dict[int | str, dict[str, Any]] = {404: {"model": ErrorOut, "description": "No such dataset"}}
BINARY = {"schema": {"type": "string", "format": "binary"}}
UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "The file itself, as the body (not a multipart form)",
        "content": {
            "application/x-npy": BINARY,
            "application/x-npz": BINARY,
            "text/csv": {"schema": {"type": "string"}},
            "application/vnd.apache.parquet": BINARY,
            "application/json": {
                "schema": {"type": "object", "properties": {"arrays": {"type": "object"}}},
                "example": {"arrays": {"x": [[0.5, 1.0], [1.5, 2.0]], "y": [0, 1]}},
            },
            "application/octet-stream": BINARY,
        },
    }
}
# The aliases the upload also recognises, after the types above (the first is Swagger UI's
# default). The request guard (app.api.request_guard) accepts exactly the types declared here.
for _media in CONTENT_TYPES:
    UPLOAD_BODY["requestBody"]["content"].setdefault(_media, BINARY)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DatasetOut,
    responses={
        413: {"model": ErrorOut, "description": "Over DATASET_MAX_BYTES"},
        422: {"model": ErrorOut, "description": "A file that cannot be read; `loc` says where"},
    },
    summary="Upload a dataset (npy, npz, CSV, Parquet or JSON)",
    openapi_extra=UPLOAD_BODY,
)
async def upload_dataset(
    ctx: Ctx,
    who: Caller,
    request: Request,
    format: Annotated[
        Literal["npy", "npz", "csv", "parquet", "json"] | None,
        Query(
            description="Overrides the Content-Type; application/octet-stream is recognised "
            "by its first bytes (npy, npz, Parquet)"
        ),
    ] = None,
    array: Annotated[
        str, Query(pattern=NAME, description="The name of the one array of an .npy upload")
    ] = "x",
    label: Annotated[
        str | None, Query(max_length=1000, description="CSV or Parquet: this column becomes `y`")
    ] = None,
    name: Annotated[str | None, Query(max_length=200)] = None,
    description: Annotated[str | None, Query(max_length=2000)] = None,
) -> DatasetOut:
    """The body is streamed to the artifact store (never held in memory) while its sha256 is
    computed; CSV and Parquet are converted once into one `.npy` per array; the row is
    committed only after the files are durable. Over DATASET_MAX_BYTES is a 413, sent as soon
    as the limit is crossed."""
    # Refused before it streams when the project has no room for it (Content-Length, or at
    # least one byte when the body is chunked).
    announced = request.headers.get("content-length", "")
    size = int(announced) if announced.isdigit() else 1
    await anyio.to_thread.run_sync(lambda: service.check_room(ctx, scope=who.scope, size=size))
    path = ctx.store.temp_path("upload")
    try:
        received = await receive(request.stream(), path, max_bytes=ctx.settings.dataset_max_bytes)
    except BodyTooLarge as exc:
        path.unlink(missing_ok=True)
        raise PayloadTooLarge(str(exc), loc=["body"]) from exc
    except ClientDisconnect as exc:
        path.unlink(missing_ok=True)
        raise InvalidInput("the upload was cut off before its end", loc=["body"]) from exc
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    fmt = upload_format(format, request.headers.get("content-type"), received.head)
    if received.size == 0 or fmt is None:
        path.unlink(missing_ok=True)
        if received.size == 0:
            raise InvalidInput("the body is empty: send the file as the body", loc=["body"])
        raise InvalidInput(
            "the format is unknown: give ?format= (npy, npz, csv, parquet, json) or a "
            "Content-Type such as application/x-npy or text/csv", loc=["query", "format"],
        )  # fmt: skip

    def store() -> DatasetRow:
        return service.create_dataset(
            ctx, scope=who.scope, raw=path, fmt=fmt, sha256=received.sha256,
            size=received.size, array=array, label=label, name=name, description=description,
        )  # fmt: skip

    row = await anyio.to_thread.run_sync(store)
    return dataset_out(row)


@router.get("", response_model=DatasetList, summary="List datasets, newest first")
def list_datasets(
    ctx: Ctx,
    who: Caller,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
    sha256: Annotated[
        str | None,
        Query(
            pattern=SHA256,
            description="Only datasets whose uploaded bytes have this sha256 (64 lowercase hex "
            "digits), of the caller's own project even for an admin key: how a client avoids "
            "uploading the same file twice",
        ),
    ] = None,
) -> DatasetList:
    rows, total = service.list_datasets(
        ctx, scope=who.scope, limit=limit, offset=offset, sha256=sha256
    )
    return DatasetList(items=[dataset_out(r) for r in rows], total=total, limit=limit,
                       offset=offset)  # fmt: skip


@router.get("/{dataset_id}", response_model=DatasetOut, responses=E404, summary="Read a dataset")
def get_dataset(ctx: Ctx, who: Caller, dataset_id: uuid.UUID) -> DatasetOut:
    return dataset_out(service.get_dataset(ctx, scope=who.scope, dataset_id=dataset_id))


@router.get(
    "/{dataset_id}/arrays/{name}",
    response_class=FileResponse,
    responses={**E404, 200: {"content": {"application/x-npy": BINARY},
                             "description": "The array as an .npy file"}},
    summary="Download one array as .npy",
)  # fmt: skip
def download_array(
    ctx: Ctx, who: Caller, dataset_id: uuid.UUID, name: Annotated[str, Path(pattern=NAME)]
) -> FileResponse:
    path = service.array_file(ctx, scope=who.scope, dataset_id=dataset_id, name=name)
    return FileResponse(path, media_type="application/x-npy", filename=f"{name}.npy")


@router.delete(
    "/{dataset_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={**E404, 409: {"model": ErrorOut, "description": "A queued or running job reads it"}},
    summary="Delete a dataset and its files",
)
def delete_dataset(ctx: Ctx, who: Caller, dataset_id: uuid.UUID) -> Response:
    service.delete_dataset(ctx, scope=who.scope, dataset_id=dataset_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
