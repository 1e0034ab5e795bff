"""Strings no UTF-8 text can hold, broken or falsified zip members, huge npy headers, numbers
past float32, deeply nested JSON and chunked bodies past the limit: each a 4xx naming the field,
never a 500, and nothing stored."""

from __future__ import annotations

import copy
import io
import json
import struct
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.db.models import ModelRow
from app.db.session import unit_of_work
from tests.api.conftest import serve
from tests.security.common import new_model, total
from tests.support import scenario

OCTET = {"content-type": "application/octet-stream"}
JSON = {"content-type": "application/json"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with serve(tmp_path, max_request_bytes=200_000) as c:
        yield c


def _refused(r: Any, status: int, loc: list[str | int]) -> None:
    assert r.status_code == status, r.text
    assert r.json()["detail"][0]["loc"][: len(loc)] == loc, r.text


def _with_layer_name(name: str) -> dict[str, Any]:
    config = copy.deepcopy(scenario.MODEL)
    config["config"]["layers"][-1]["config"]["name"] = name
    return config


# -- strings ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["x\ud800y", "x\x00y"])
def test_config_strings_must_be_text(client: TestClient, name: str) -> None:
    body = json.dumps({"config": _with_layer_name(name)})  # "\ud800" is sent escaped
    r = client.post("/v1/models", content=body, headers=JSON)
    _refused(r, 422, ["body", "config", "config", "layers"])
    assert total(client) == 0


def test_query_names_must_be_text(client: TestClient) -> None:
    data = client.get(f"/v1/models/{new_model(client)}/model.keras").content
    r = client.post("/v1/models/import?name=a%00b", content=data, headers=OCTET)
    _refused(r, 422, ["query", "name"])
    r = client.post("/v1/datasets?format=json&name=a%00b", json={"arrays": {"x": [1.0]}})
    _refused(r, 422, ["query", "name"])
    assert total(client) == 1
    assert client.get("/v1/datasets").json()["total"] == 0


def test_keras_file_names_must_be_text(client: TestClient) -> None:
    data = client.get(f"/v1/models/{new_model(client)}/model.keras").content
    config = json.loads(_member(data, "config.json"))
    config["config"]["layers"][-1]["config"]["name"] = "x\ud800y"
    r = client.post("/v1/models/import", content=_keras(data, json.dumps(config).encode()),
                    headers=OCTET)  # fmt: skip
    _refused(r, 422, ["body", "config.json"])
    assert total(client) == 1


def test_a_bad_stored_row_does_not_break_the_listing(client: TestClient) -> None:
    model_id = new_model(client)
    ctx = client.app.state.ctx  # type: ignore[attr-defined]
    with unit_of_work(ctx.sessions) as session:  # a row stored before the check existed
        row = session.get(ModelRow, __import__("uuid").UUID(model_id))
        row.config = _with_layer_name("x\ud800y")
    for path in ("/v1/models", "/v1/models?limit=1&offset=0", f"/v1/models/{model_id}"):
        r = client.get(path)
        assert r.status_code == 200, r.text
        assert "x\ufffdy" in r.text


# -- zip members ---------------------------------------------------------------------------------
def _central(data: bytes) -> int:
    return data.index(b"PK\x01\x02")


def _patch(data: bytes, fmt: str, value: int, local: int, central: int) -> bytes:
    """Set one field of the first member in its local header and its central directory entry."""
    out = bytearray(data)
    struct.pack_into(fmt, out, local, value)
    struct.pack_into(fmt, out, _central(data) + central, value)
    return bytes(out)


def _zip(members: list[tuple[str, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=method) as archive:
        for name, content in members:
            archive.writestr(name, content)
    return out.getvalue()


def _corrupt_deflate(data: bytes) -> bytes:
    name_length, extra_length = struct.unpack_from("<HH", data, 26)
    start = 30 + name_length + extra_length
    out = bytearray(data)
    out[start : start + 8] = b"\xff" * 8
    return bytes(out)


BROKEN = {
    "encrypted": lambda d: _patch(d, "<H", 0x1, 6, 8),
    "method 6": lambda d: _patch(d, "<H", 6, 8, 10),
    "method 99": lambda d: _patch(d, "<H", 99, 8, 10),
    "bad CRC": lambda d: _patch(d, "<L", 0xDEADBEEF, 14, 16),
    "size too large": lambda d: _patch(d, "<L", 150_000, 22, 24),
    "size too small": lambda d: _patch(d, "<L", 100, 22, 24),
    "corrupt deflate": _corrupt_deflate,
}


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _weights(client: TestClient, model_id: str) -> list[np.ndarray]:
    content = client.get(f"/v1/models/{model_id}/weights").content
    with np.load(io.BytesIO(content)) as npz:
        return [npz[f"arr_{i}"] for i in range(len(npz.files))]


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_npz_members_are_refused(client: TestClient, case: str) -> None:
    model_id = new_model(client)
    good = _weights(client, model_id)
    data = _zip([(f"arr_{i}.npy", _npy(a)) for i, a in enumerate(good)])
    r = client.put(f"/v1/models/{model_id}/weights", content=BROKEN[case](data), headers=OCTET)
    _refused(r, 422, ["body", "arr_0"])
    assert client.get(f"/v1/models/{model_id}").json()["weights"] == "initial"


def test_a_huge_npy_header_is_refused_before_allocating(client: TestClient) -> None:
    model_id = new_model(client)
    good = _weights(client, model_id)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (10**12,)}
    )
    members = [(f"arr_{i}.npy", _npy(a)) for i, a in enumerate(good)]
    members[0] = ("arr_0.npy", header.getvalue() + b"\0" * 64)
    r = client.put(f"/v1/models/{model_id}/weights", content=_zip(members), headers=OCTET)
    _refused(r, 422, ["body", "arr_0"])
    assert client.get(f"/v1/models/{model_id}").json()["weights"] == "initial"


def _member(data: bytes, name: str) -> bytes:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return archive.read(name)


def _keras(data: bytes, config: bytes) -> bytes:
    """The .keras file `data` with `config` as its config.json, written first and deflated."""
    return _zip([("config.json", config), ("metadata.json", _member(data, "metadata.json")),
                 ("model.weights.h5", _member(data, "model.weights.h5"))])  # fmt: skip


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_keras_members_are_refused(client: TestClient, case: str) -> None:
    data = client.get(f"/v1/models/{new_model(client)}/model.keras").content
    broken = BROKEN[case](_keras(data, _member(data, "config.json")))
    r = client.post("/v1/models/import", content=broken, headers=OCTET)
    _refused(r, 422, ["body", "config.json"])
    assert total(client) == 1


# -- numbers, nesting, sizes --------------------------------------------------------------------
def test_weights_past_float32_are_refused(client: TestClient) -> None:
    model_id = new_model(client)
    arrays = [a.tolist() for a in _weights(client, model_id)]
    arrays[0] = (np.full_like(np.asarray(arrays[0]), 1e300)).tolist()
    r = client.put(f"/v1/models/{model_id}/weights", json={"weights": arrays})
    _refused(r, 422, ["body", "weights", 0])
    assert client.get(f"/v1/models/{model_id}").json()["weights"] == "initial"


DEEP = "[" * 3000 + "]" * 3000


def test_deep_json_is_refused(client: TestClient) -> None:
    model_id = new_model(client)
    r = client.put(f"/v1/models/{model_id}/weights", content='{"weights": ' + DEEP + "}",
                   headers=JSON)  # fmt: skip
    _refused(r, 422, ["body"])
    assert client.get(f"/v1/models/{model_id}").json()["weights"] == "initial"
    data = client.get(f"/v1/models/{model_id}/model.keras").content
    deep = _keras(data, ('{"a": ' + DEEP + "}").encode())
    r = client.post("/v1/models/import", content=deep, headers=OCTET)
    _refused(r, 422, ["body", "config.json"])
    assert total(client) == 1


def _chunks() -> Iterator[bytes]:
    for _ in range(30):
        yield b"\0" * 10_000  # 300 kB in all, chunked (no Content-Length)


def test_chunked_bodies_past_the_limit_are_413(client: TestClient) -> None:
    model_id = new_model(client)
    r = client.put(f"/v1/models/{model_id}/weights", content=_chunks(), headers=OCTET)
    _refused(r, 413, ["body"])
    r = client.post("/v1/models/import", content=_chunks(), headers=OCTET)
    _refused(r, 413, ["body"])
    assert total(client) == 1
    assert client.get(f"/v1/models/{model_id}").json()["weights"] == "initial"
