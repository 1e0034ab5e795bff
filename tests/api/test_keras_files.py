"""`.keras` files both ways with Keras itself, and hostile archives refused."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from fastapi.testclient import TestClient

from tests.support import scenario

os.environ.setdefault("KERAS_BACKEND", "torch")
OCTET = {"content-type": "application/octet-stream"}


def _keras_model() -> Any:
    import keras

    model = keras.Sequential([
        keras.Input((4,)), keras.layers.Dense(8, activation="tanh"), keras.layers.Dropout(0.2),
        keras.layers.Dense(3, activation="softmax"),
    ])  # fmt: skip
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])  # fmt: skip
    return model


def test_import_a_file_keras_saved(client: TestClient, tmp_path: Path) -> None:
    km = _keras_model()
    path = tmp_path / "m.keras"
    km.save(path)
    r = client.post("/v1/models/import?name=imported", content=path.read_bytes(), headers=OCTET)
    assert r.status_code == 201, r.text
    model = r.json()
    assert model["name"] == "imported" and model["weights"] == "uploaded"
    assert model["summary"]["total_params"] == km.count_params()
    assert model["compile"]["loss"] == "sparse_categorical_crossentropy"
    x = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    r = client.post(f"/v1/models/{model['id']}/predict", json={"x": x.tolist()})
    np.testing.assert_allclose(r.json()["predictions"], km.predict(x, verbose=0), rtol=1e-6,
                               atol=1e-7)  # fmt: skip
    y = np.array([0, 1, 2, 1, 0, 2, 1, 0, 2, 1], dtype=np.float32)
    r = client.post(f"/v1/models/{model['id']}/evaluate", json={"x": x.tolist(), "y": y.tolist()})
    theirs = km.evaluate(x, y, return_dict=True, verbose=0)
    for key, value in theirs.items():
        np.testing.assert_allclose(r.json()[key], value, rtol=1e-6)


def test_export_opens_in_keras_and_predicts_the_same(client: TestClient, tmp_path: Path) -> None:
    import keras

    model = client.post("/v1/models", json={"config": scenario.MODEL, "seed": 4}).json()
    job = client.post(f"/v1/models/{model['id']}/fit", json=scenario.fit_body(epochs=3)).json()
    from tests.e2e.scenario_checks import wait_for

    wait_for(client, job["id"], {"succeeded"})  # type: ignore[arg-type]
    r = client.get(f"/v1/models/{model['id']}/model.keras")
    assert r.status_code == 200
    path = tmp_path / "ours.keras"
    path.write_bytes(r.content)
    km = keras.saving.load_model(path)
    ours = client.post(f"/v1/models/{model['id']}/predict", json={"x": scenario.X.tolist()})
    np.testing.assert_allclose(km.predict(scenario.X, verbose=0), ours.json()["predictions"],
                               rtol=1e-6, atol=1e-7)  # fmt: skip
    assert km.optimizer.get_config()["learning_rate"] == np.float32(0.1)
    # and back in: the same numbers again
    back = client.post("/v1/models/import", content=r.content, headers=OCTET).json()
    again = client.post(f"/v1/models/{back['id']}/predict", json={"x": scenario.X.tolist()})
    assert again.json() == ours.json()


def _archive(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return out.getvalue()


def test_hostile_archives_are_refused(client: TestClient, tmp_path: Path) -> None:
    km = _keras_model()
    path = tmp_path / "m.keras"
    km.save(path)
    with zipfile.ZipFile(path) as z:
        good = {n: z.read(n) for n in z.namelist() if not n.endswith("/")}
    config = json.loads(good["config.json"])
    lambda_config = json.loads(good["config.json"])
    lambda_config["config"]["layers"][1] = {"module": "keras.layers", "class_name": "Lambda",
                                            "config": {"function": "eval"}}  # fmt: skip
    foreign = json.loads(good["config.json"])
    foreign["config"]["layers"][1]["module"] = "evil.module"
    cases = [
        ({**good, "../escape.txt": b"x"}, "unsafe path"),
        ({**good, "payload.py": b"import os"}, "unexpected member"),
        ({**good, "config.json": json.dumps(lambda_config).encode()}, "Python code"),
        ({**good, "config.json": json.dumps(foreign).encode()}, "only Keras's own modules"),
        ({**good, "config.json": b"x" * (17 * 1024 * 1024)}, "larger than"),
        ({k: v for k, v in good.items() if k != "model.weights.h5"}, "missing"),
        ({**good, "model.weights.h5": b"not hdf5"}, "not a readable HDF5"),
    ]
    assert config["class_name"] == "Sequential"
    for members, text in cases:
        r = client.post("/v1/models/import", content=_archive(members), headers=OCTET)
        assert r.status_code in (413, 422), r.text
        if r.status_code == 422:
            assert text in r.json()["detail"][0]["msg"], (text, r.json())
    r = client.post("/v1/models/import", content=b"not a zip", headers=OCTET)
    assert r.status_code == 422
    assert client.get("/v1/models").json()["total"] == 0


def test_functional_files_both_ways_with_named_and_shared_layers(
    client: TestClient, tmp_path: Path
) -> None:
    """Keras's saver names weight groups by class (dense, dense_1, ...), not by layer name."""
    import keras

    a, b = keras.Input((4,), name="a"), keras.Input((4,), name="b")
    shared = keras.layers.Dense(3, activation="tanh", name="shared")
    joined = keras.layers.Concatenate(name="joined")([shared(a), shared(b)])
    bn = keras.layers.BatchNormalization(name="norm")(joined)
    cls = keras.layers.Dense(2, activation="softmax", name="cls")(bn)
    reg = keras.layers.Dense(1, name="reg")(joined)
    km = keras.Model({"a": a, "b": b}, [cls, reg])
    rng = np.random.default_rng(2)
    km.layers[-1].set_weights([w + 0.5 for w in km.layers[-1].get_weights()])
    xa, xb = (rng.normal(size=(6, 4)).astype(np.float32) for _ in range(2))
    path = tmp_path / "f.keras"
    km.save(path)
    r = client.post("/v1/models/import", content=path.read_bytes(), headers=OCTET)
    assert r.status_code == 201, r.text
    url = f"/v1/models/{r.json()['id']}"
    got = client.post(f"{url}/predict", json={"x": {"a": xa.tolist(), "b": xb.tolist()}}).json()
    want = km.predict({"a": xa, "b": xb}, verbose=0)
    for name, value in zip(("cls", "reg"), want, strict=True):
        np.testing.assert_allclose(got["predictions"][name], value, rtol=1e-6, atol=1e-6)
    exported = tmp_path / "back.keras"
    exported.write_bytes(client.get(f"{url}/model.keras").content)
    again = keras.saving.load_model(exported)
    for theirs, ours in zip(again.predict({"a": xa, "b": xb}, verbose=0), want, strict=True):
        np.testing.assert_allclose(theirs, ours, rtol=1e-6, atol=1e-6)


def test_attention_files_both_ways(client: TestClient, tmp_path: Path) -> None:
    """Layers that hold others keep their weights in nested groups (MultiHeadAttention's
    query_dense/vars/0, ...)."""
    import keras

    q = keras.Input((5, 8), name="q")
    h = keras.layers.MultiHeadAttention(2, 4, name="mha")(q, q, use_causal_mask=True)
    h = keras.layers.EinsumDense("abc,cd->abd", output_shape=(None, 3), bias_axes="d")(h)
    km = keras.Model(q, keras.layers.GlobalAveragePooling1D()(h))
    x = np.random.default_rng(5).normal(size=(4, 5, 8)).astype(np.float32)
    _both_ways(client, tmp_path, km, x)


def test_nested_model_files_both_ways(client: TestClient, tmp_path: Path) -> None:
    import keras

    base = keras.Sequential([keras.layers.Dense(4, activation="relu"), keras.layers.Dense(3)],
                            name="base")  # fmt: skip
    a = keras.Input((5,), name="a")
    km = keras.Model(a, keras.layers.Dense(1, name="head")(base(a)))
    x = np.random.default_rng(6).normal(size=(4, 5)).astype(np.float32)
    _both_ways(client, tmp_path, km, x)


def test_convolution_files_both_ways(client: TestClient, tmp_path: Path) -> None:
    """Keras's group names keep a digit with its capital: conv2d, max_pooling2d, conv2d_1."""
    import keras

    km = keras.Sequential([
        keras.Input((8, 8, 2)), keras.layers.Conv2D(3, 3, name="c1"),
        keras.layers.MaxPooling2D(), keras.layers.Conv2D(2, 2, name="c2"),
        keras.layers.Flatten(), keras.layers.Dense(1),
    ])  # fmt: skip
    x = np.random.default_rng(8).normal(size=(3, 8, 8, 2)).astype(np.float32)
    _both_ways(client, tmp_path, km, x)


def _h5_archive(tmp_path: Path, make: Any) -> bytes:
    """A Keras-saved Dense(1) model whose weights file is replaced by `make(h5_file)`."""
    import h5py
    import keras

    km = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    path = tmp_path / "base.keras"
    km.save(path)
    weights = io.BytesIO()
    with h5py.File(weights, "w") as f:
        make(f)
    out = io.BytesIO()
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for name in src.namelist():
            data = weights.getvalue() if name == "model.weights.h5" else src.read(name)
            dst.writestr(name, data)
    return out.getvalue()


def test_weights_files_cannot_reach_other_files_or_blow_up(
    client: TestClient, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\x00" * 12)

    def external(f: Any) -> None:
        f.create_dataset("layers/dense/vars/0", shape=(3, 1), dtype="float32",
                         external=[(str(secret), 0, 12)])  # fmt: skip
        f.create_dataset("layers/dense/vars/1", data=np.zeros(1, np.float32))

    def huge(f: Any) -> None:
        f.create_dataset("layers/dense/vars/0", shape=(1 << 28,), dtype="float32",
                         chunks=(1 << 20,), compression="gzip")  # fmt: skip
        f.create_dataset("layers/dense/vars/1", data=np.zeros(1, np.float32))

    def linked(f: Any) -> None:
        import h5py

        f["layers/dense/vars/0"] = h5py.ExternalLink(str(secret), "/x")
        f.create_dataset("layers/dense/vars/1", data=np.zeros(1, np.float32))

    for make, text in ((external, "plain numeric"), (huge, "shape"), (linked, "plain numeric")):
        r = client.post("/v1/models/import", content=_h5_archive(tmp_path, make), headers=OCTET)
        assert r.status_code == 422, r.text
        assert text in r.json()["detail"][0]["msg"]


def _both_ways(client: TestClient, tmp_path: Path, km: Any, x: np.ndarray) -> None:
    """Keras's file imported here predicts Keras's numbers; our export of it, opened by
    Keras, predicts ours."""
    import keras

    path = tmp_path / "theirs.keras"
    km.save(path)
    r = client.post("/v1/models/import", content=path.read_bytes(), headers=OCTET)
    assert r.status_code == 201, r.text
    url = f"/v1/models/{r.json()['id']}"
    got = client.post(f"{url}/predict", json={"x": x.tolist()}).json()["predictions"]
    np.testing.assert_allclose(got, km.predict(x, verbose=0), rtol=1e-6, atol=1e-6)
    exported = tmp_path / "ours.keras"
    exported.write_bytes(client.get(f"{url}/model.keras").content)
    again = keras.saving.load_model(exported)
    np.testing.assert_allclose(again.predict(x, verbose=0), got, rtol=1e-6, atol=1e-6)
