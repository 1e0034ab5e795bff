"""The datasets routes on the real Postgres and on the embedded SQLite database: every format
uploads and reads back bit for bit, the limit is a 413 while streaming, bad files are 4xx that
store nothing, and a dataset a queued job reads cannot be deleted."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

SETTINGS = {"dataset_max_bytes": 1_000_000}
NPY = {"content-type": "application/x-npy"}


def npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def download(client: TestClient, dataset_id: str, name: str) -> np.ndarray:
    r = client.get(f"/v1/datasets/{dataset_id}/arrays/{name}")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/x-npy"
    return np.load(io.BytesIO(r.content), allow_pickle=False)


def stored_files(tmp_path: Path) -> list[Path]:
    root = tmp_path / "artifacts"
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_npy_upload_reads_back_bit_for_bit(client: TestClient) -> None:
    x = np.random.default_rng(0).integers(0, 256, (50, 4, 4), dtype=np.uint8)
    body = npy(x)
    r = client.post("/v1/datasets?name=digits&array=images", content=body,
                    headers={"content-type": "application/x-npy"})  # fmt: skip
    assert r.status_code == 201, r.text
    out = r.json()
    import hashlib

    assert out["sha256"] == hashlib.sha256(body).hexdigest()
    assert out["size_bytes"] == len(body) and out["format"] == "npy" and out["name"] == "digits"
    [info] = out["arrays"]
    assert info["name"] == "images" and info["dtype"] == "uint8" and info["shape"] == [50, 4, 4]
    assert info["bytes"] == x.nbytes and info["min"] == x.min() and info["max"] == x.max()
    got = download(client, out["id"], "images")
    assert got.dtype == np.uint8 and np.array_equal(got, x)
    assert client.get(f"/v1/datasets/{out['id']}").json() == out
    listed = client.get("/v1/datasets").json()
    assert listed["total"] == 1 and listed["items"][0]["id"] == out["id"]


def test_npz_json_and_csv_uploads(client: TestClient) -> None:
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(20, 3)).astype(np.float32), rng.integers(0, 2, 20).astype(np.int64)
    buf = io.BytesIO()
    np.savez(buf, x=x, y=y)
    r = client.post("/v1/datasets", content=buf.getvalue(),
                    headers={"content-type": "application/octet-stream"})  # fmt: skip
    assert r.status_code == 201, r.text
    assert np.array_equal(download(client, r.json()["id"], "x"), x)
    assert np.array_equal(download(client, r.json()["id"], "y"), y)

    body = json.dumps({"arrays": {"x": [[1.5, 2.0], [3.0, 4.25]], "y": [0, 1]}})
    r = client.post("/v1/datasets", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 201, r.text
    got = download(client, r.json()["id"], "x")
    assert got.dtype == np.float32 and got.tolist() == [[1.5, 2.0], [3.0, 4.25]]
    assert download(client, r.json()["id"], "y").dtype == np.int64

    csv = "a,b,label\n1.5,2,0\n3,4.5,1\n"
    r = client.post("/v1/datasets?label=label", content=csv, headers={"content-type": "text/csv"})
    assert r.status_code == 201, r.text
    arrays = {a["name"]: a for a in r.json()["arrays"]}
    assert arrays["x"]["columns"] == ["a", "b"] and arrays["x"]["shape"] == [2, 2]
    assert download(client, r.json()["id"], "y").tolist() == [0, 1]


def test_bad_files_are_4xx_and_store_nothing(client: TestClient, tmp_path: Path) -> None:
    before = stored_files(tmp_path)
    cases = [
        (npy(np.zeros((10, 3), np.float32))[:-7], "application/x-npy", 422),  # truncated
        (b"a,b\n", "text/csv", 422),  # header only
        (b"a,b\n1,\n", "text/csv", 422),  # a missing value
        (b"a,b\n1,hello\n", "text/csv", 422),  # a text column
        (b"garbage", "application/octet-stream", 422),  # unknown format
        (b"", "application/x-npy", 422),  # empty
        (npy(np.zeros(300_000, np.float32)), "application/x-npy", 413),  # over the limit
    ]
    for body, content_type, status in cases:
        r = client.post("/v1/datasets", content=body, headers={"content-type": content_type})
        assert r.status_code == status, (content_type, r.text)
        assert r.json()["detail"][0]["loc"][0] in ("body", "query"), r.text
    assert client.get("/v1/datasets").json()["total"] == 0
    assert stored_files(tmp_path) == before


def test_a_chunked_body_past_the_limit_is_a_413(client: TestClient, tmp_path: Path) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield os.urandom(50_000)

    r = client.post("/v1/datasets?format=npy", content=chunks(), headers=NPY)
    assert r.status_code == 413, r.text
    assert "1000000" in r.json()["detail"][0]["msg"]
    assert stored_files(tmp_path) == []


def test_unknown_ids_and_arrays_are_404(client: TestClient) -> None:
    r = client.post("/v1/datasets", content=npy(np.ones(3, np.float32)),
                    headers={"content-type": "application/x-npy"})  # fmt: skip
    dataset_id = r.json()["id"]
    assert client.get(f"/v1/datasets/{dataset_id}/arrays/y").status_code == 404
    missing = "00000000-0000-4000-8000-000000000000"
    assert client.get(f"/v1/datasets/{missing}").status_code == 404
    assert client.delete(f"/v1/datasets/{missing}").status_code == 404
    assert client.delete(f"/v1/datasets/{dataset_id}").status_code == 204
    assert client.get(f"/v1/datasets/{dataset_id}").status_code == 404


def test_hostile_files_through_the_route_store_nothing(client: TestClient, tmp_path: Path) -> None:
    """The converter's refusals (tests/datasets/test_formats_hostile.py has them all), as the
    route answers them: a 4xx naming where, no row, no file left behind."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tests.datasets.test_formats_hostile import Member, zip_bytes

    good = npy(np.arange(6, dtype=np.float32))
    obj = io.BytesIO()
    np.save(obj, np.array([{}], dtype=object), allow_pickle=True)
    header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000,), }"
    header += b" " * (118 - len(header)) + b"\n"
    huge = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + b"\0" * 64
    table = pa.table({"name": ["a", "b"], "y": [0, 1]})
    parquet = io.BytesIO()
    pq.write_table(table, parquet)
    cases = [
        (zip_bytes([Member("o.npy", obj.getvalue())]), "application/x-npz"),
        (zip_bytes([Member("x.npy", good, file_size=len(good) + 100)]), "application/x-npz"),
        (zip_bytes([Member("x.npy", good, method=99, flags=1)]), "application/x-npz"),
        (zip_bytes([Member("x.npy", good)])[:-30], "application/x-npz"),
        (huge, "application/x-npy"),
        (b",".join(b"c%d" % i for i in range(100_000)) + b"\n", "text/csv"),
        (parquet.getvalue(), "application/vnd.apache.parquet"),
    ]
    for body, content_type in cases:
        r = client.post("/v1/datasets", content=body, headers={"content-type": content_type})
        assert 400 <= r.status_code < 500, (content_type, r.text)
        assert r.json()["detail"][0]["loc"], r.text
    assert client.get("/v1/datasets").json()["total"] == 0
    assert stored_files(tmp_path) == []


def test_the_list_filters_by_sha256(client: TestClient) -> None:
    """A client looks up the bytes it is about to send, and reuses a dataset that has them."""
    import hashlib

    body = npy(np.arange(12, dtype=np.float32).reshape(6, 2))
    first = client.post("/v1/datasets", content=body, headers=NPY).json()
    client.post("/v1/datasets", content=npy(np.zeros(3, np.int64)), headers=NPY)
    digest = hashlib.sha256(body).hexdigest()
    assert first["sha256"] == digest
    found = client.get(f"/v1/datasets?sha256={digest}").json()
    assert found["total"] == 1 and [d["id"] for d in found["items"]] == [first["id"]]
    none = client.get(f"/v1/datasets?sha256={'0' * 64}").json()
    assert none["total"] == 0 and none["items"] == []
    assert client.get("/v1/datasets").json()["total"] == 2
    r = client.get("/v1/datasets?sha256=NOT-HEX")
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "sha256"]
