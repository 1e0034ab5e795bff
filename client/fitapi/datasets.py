"""client.datasets: upload (numpy arrays as `.npy`/`.npz`, or a file as it is), streamed, with
a progress bar, and never twice: the sha256 of the bytes to send is looked up first, on the
server (GET /v1/datasets?sha256=) and in the client's own cache."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from fitapi import arrays, transfer
from fitapi.arrays import Payload

if TYPE_CHECKING:
    from fitapi.client import Client


class Dataset:
    """An uploaded dataset: `.id`, `.name`, `.sha256`, `.arrays` (name, dtype, shape, ...)."""

    def __init__(self, client: Client, raw: dict[str, Any]) -> None:
        self._client = client
        self.raw = raw

    @property
    def id(self) -> str:
        return str(self.raw["id"])

    @property
    def name(self) -> str | None:
        return self.raw.get("name")

    @property
    def sha256(self) -> str:
        return str(self.raw["sha256"])

    @property
    def arrays(self) -> list[dict[str, Any]]:
        return list(self.raw.get("arrays", []))

    def __repr__(self) -> str:
        names = ", ".join(f"{a['name']}{tuple(a['shape'])}" for a in self.arrays)
        return f"<fitapi.Dataset {self.id} {names}>"

    def ref(self, array: str | None = None, rows: tuple[int, int] | None = None) -> dict[str, Any]:
        """`{"dataset": id, "array": name, "rows"?: [start, stop]}`, where fit, evaluate and
        predict take an array; the array defaults to the dataset's only one."""
        if array is None:
            if len(self.arrays) != 1:
                names = [a["name"] for a in self.arrays]
                raise ValueError(f"dataset {self.id} has several arrays {names}: name one")
            array = str(self.arrays[0]["name"])
        ref: dict[str, Any] = {"dataset": self.id, "array": array}
        if rows is not None:
            ref["rows"] = [int(rows[0]), int(rows[1])]
        return ref

    def download(self, array: str | None = None) -> np.ndarray:
        name = self.ref(array)["array"]
        response = self._client.request("GET", f"/v1/datasets/{self.id}/arrays/{name}")
        return arrays.load_npy(response.content)


class Datasets:
    def __init__(self, client: Client) -> None:
        self._client = client
        self._by_sha: dict[str, Dataset] = {}

    def upload(
        self,
        source: Any,
        *,
        name: str | None = None,
        array: str | None = None,
        label: str | None = None,
        description: str | None = None,
        progress: bool | None = None,
    ) -> Dataset:
        """Upload an array (`.npy`), a dict of arrays (`.npz`) or a file (npy, npz, csv,
        parquet, json), unless a dataset of exactly these bytes exists already."""
        if isinstance(source, (str, os.PathLike)):
            payload = arrays.file_payload(source)
            label_text = os.path.basename(os.fspath(source))
        elif isinstance(source, Mapping):
            payload = arrays.npz_payload(source)
            label_text = name or "arrays.npz"
        else:
            payload = arrays.npy_payload(arrays.as_array(source, array or "x"))
            label_text = name or f"{array or 'x'}.npy"
        try:
            found = self.find(payload.sha256)
            if found is not None:
                return found
            return self._send(payload, name=name, array=array, label=label,
                              description=description, label_text=label_text,
                              show=transfer.wanted(progress))  # fmt: skip
        finally:
            payload.cleanup()

    def find(self, sha256: str) -> Dataset | None:
        """The caller's dataset uploaded as exactly these bytes, if there is one."""
        if sha256 in self._by_sha:
            return self._by_sha[sha256]
        items = self._client.get_json("/v1/datasets", {"sha256": sha256, "limit": 1})["items"]
        if not items:
            return None
        dataset = Dataset(self._client, items[0])
        self._by_sha[sha256] = dataset
        return dataset

    def _send(self, payload: Payload, *, name: str | None, array: str | None, label: str | None,
              description: str | None, label_text: str, show: bool) -> Dataset:  # fmt: skip
        params = {"format": payload.fmt, "name": name, "array": array, "label": label,
                  "description": description}  # fmt: skip
        headers = {"Content-Type": payload.media, "Content-Length": str(payload.size)}
        response = self._client.request(
            "POST", "/v1/datasets", params=params, headers=headers,
            content=lambda: transfer.tracked(payload.chunks(), payload.size, label_text, show),
            timeout=max(self._client.timeout, 600.0),
        )  # fmt: skip
        dataset = Dataset(self._client, response.json())
        self._by_sha[dataset.sha256] = dataset
        return dataset

    def get(self, dataset_id: str) -> Dataset:
        return Dataset(self._client, self._client.get_json(f"/v1/datasets/{dataset_id}"))

    def list(self, limit: int = 50, offset: int = 0) -> list[Dataset]:
        body = self._client.get_json("/v1/datasets", {"limit": limit, "offset": offset})
        return [Dataset(self._client, raw) for raw in body["items"]]

    def delete(self, dataset_id: str) -> None:
        self._client.request("DELETE", f"/v1/datasets/{dataset_id}")
        self._by_sha = {k: v for k, v in self._by_sha.items() if v.id != str(dataset_id)}
