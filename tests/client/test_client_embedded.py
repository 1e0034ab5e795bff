"""The Python client against a real server on the embedded default: the seed scenario in a few
lines equals its raw HTTP run, Keras models round-trip, a fit runs in the background and is
cancelled, errors carry the field and reason, arrays are uploaded once, and fit prints Keras's
progress lines."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import fitapi
import numpy as np
import pytest

from tests.client.flows import check_same_as_raw
from tests.client.lossy_proxy import lossy_proxy
from tests.client.servers import embedded_server
from tests.e2e.harness import poll
from tests.support import scenario

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with embedded_server(tmp_path_factory.mktemp("client")) as url:
        yield url


@pytest.fixture
def client(base: str) -> Iterator[fitapi.Client]:
    with fitapi.Client(base) as c:
        yield c


def test_the_seed_scenario_gives_the_raw_http_history(client: fitapi.Client, base: str) -> None:
    check_same_as_raw(client, base)


def test_a_keras_model_round_trips_through_create_and_to_keras(
    client: fitapi.Client, tmp_path: Path
) -> None:
    import keras

    keras.utils.set_random_seed(0)
    km = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, activation="relu"),
                           keras.layers.Dense(2, activation="softmax")])  # fmt: skip
    model = client.models.create(km)
    assert model.name == km.name
    for ours, theirs in zip(model.get_weights(), km.get_weights(), strict=True):
        assert np.array_equal(ours, theirs)
    back = model.to_keras()
    for ours, theirs in zip(back.get_weights(), km.get_weights(), strict=True):
        assert np.array_equal(ours, theirs)
    x = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32)
    expected = km.predict(x, verbose=0)
    assert np.array_equal(back.predict(x, verbose=0), expected)
    np.testing.assert_allclose(model.predict(x), expected, rtol=1e-5, atol=1e-6)
    # A .keras file, and the JSON of a create request, make the same model.
    km.save(tmp_path / "m.keras")
    imported = client.models.create(tmp_path / "m.keras", name="imported")
    assert imported.name == "imported"
    pairs = zip(imported.get_weights(), km.get_weights(), strict=True)
    assert all(np.array_equal(a, b) for a, b in pairs)
    (tmp_path / "m.json").write_text(json.dumps({"config": json.loads(km.to_json()), "seed": 5}))
    assert client.models.create(tmp_path / "m.json").raw["seed"] == 5

    # Keras's own objects in compile and fit become the service's specs.
    model.compile(optimizer=keras.optimizers.Adam(0.01),
                  loss=keras.losses.SparseCategoricalCrossentropy(),
                  metrics=[keras.metrics.SparseCategoricalAccuracy()])  # fmt: skip
    y = (x[:, 0] > 0).astype(np.int64)
    history = model.fit(x, y, epochs=3, batch_size=8, verbose=0, validation_split=0.25,
                        callbacks=[keras.callbacks.EarlyStopping(patience=5)])  # fmt: skip
    assert isinstance(history, fitapi.History) and history.epoch == [0, 1, 2]
    assert {"loss", "val_loss", "sparse_categorical_accuracy"} <= set(history.history)
    trained = model.to_keras()
    np.testing.assert_allclose(trained.predict(x, verbose=0), model.predict(x), rtol=1e-5,
                               atol=1e-6)  # fmt: skip


def test_a_background_fit_is_cancelled(client: fitapi.Client) -> None:
    model = client.models.create(scenario.MODEL, seed=1)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    save = fitapi.callbacks.ModelCheckpoint("model.keras", monitor="loss")  # a checkpoint an epoch
    job = model.fit(scenario.X, scenario.Y, epochs=10_000, callbacks=[save], wait=False)
    assert isinstance(job, fitapi.Job) and job.kind == "fit"
    poll(lambda: job.refresh().raw["epochs_done"] >= 1, "the first epoch")
    job.cancel()
    with pytest.raises(fitapi.JobCancelled) as info:
        job.wait(verbose=0)
    assert info.value.job.status == "cancelled"
    assert len(job.logs()) == job.raw["epochs_done"] >= 1
    assert job.checkpoints() and job.checkpoints()[-1]["trigger"] == "model_checkpoint"
    # The model trains again afterwards; resume continues the cancelled job.
    resumed = job.resume(epochs=job.raw["epochs_done"] + 2)
    history = resumed.wait(verbose=0)
    assert history.epoch[0] == job.raw["epochs_done"] and len(history.epoch) >= 1


def test_a_retried_create_with_the_same_key_creates_once(client: fitapi.Client) -> None:
    key = str(uuid.uuid4())
    name = f"once-{key[:8]}"
    body = {"config": scenario.MODEL, "seed": 3, "name": name}
    first = client.request("POST", "/v1/models", json=body, headers={"Idempotency-Key": key})
    again = client.request("POST", "/v1/models", json=body, headers={"Idempotency-Key": key})
    assert first.json()["id"] == again.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert [m.id for m in client.models.list(limit=100) if m.name == name] == [first.json()["id"]]


def test_a_create_whose_answer_is_lost_is_retried_and_creates_once(base: str) -> None:
    # The server creates the model, the answer never arrives: the client retries with the same
    # key and gets the first answer back, so exactly one model exists.
    name = f"lost-{uuid.uuid4().hex[:8]}"
    with lossy_proxy(base, lose_posts=2) as proxy, fitapi.Client(proxy.url) as client:
        model = client.models.create(scenario.MODEL, seed=3, name=name)
        assert len(proxy.lost) == 2 and len(set(proxy.seen_keys)) == 1  # three tries, one key
        assert [m.id for m in client.models.list(limit=100) if m.name == name] == [model.id]


def test_errors_carry_the_field_and_the_reason(client: fitapi.Client) -> None:
    model = client.models.create(scenario.MODEL, seed=1)
    with pytest.raises(fitapi.InvalidRequest) as bad:
        model.compile(optimizer="adam", loss="no_such_loss")
    assert bad.value.status == 422 and bad.value.loc == ["body", "loss"]
    assert "no_such_loss" in bad.value.msg and bad.value.type
    assert bad.value.detail[0]["loc"] == ["body", "loss"]
    missing = str(uuid.uuid4())
    with pytest.raises(fitapi.NotFound) as gone:
        client.models.get(missing)
    assert gone.value.status == 404 and missing in gone.value.msg
    with pytest.raises(fitapi.InvalidRequest) as wrong:
        model.fit(scenario.X, scenario.Y, epochs=1, batch_size=0)
    assert wrong.value.loc == ["body", "batch_size"]
    assert isinstance(wrong.value, fitapi.ApiError) and str(wrong.value).startswith("422")


def test_the_same_array_is_uploaded_once(client: fitapi.Client, base: str) -> None:
    x = np.random.default_rng(7).normal(size=(64, 3)).astype(np.float32)
    before = client.get_json("/v1/datasets")["total"]
    first = client.datasets.upload(x, progress=False)
    assert client.get_json("/v1/datasets")["total"] == before + 1
    assert client.datasets.upload(x.copy(), progress=False).id == first.id  # the cache
    with fitapi.Client(base) as fresh:  # a new client asks the server by sha256
        assert fresh.datasets.upload(x, progress=False).id == first.id
        assert fresh.datasets.find(first.sha256) is not None
    assert client.get_json("/v1/datasets")["total"] == before + 1
    assert np.array_equal(first.download(), x)
    # A fit over arrays already sent uploads nothing new.
    model = client.models.create(scenario.MODEL, seed=1)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    model.fit(scenario.X, scenario.Y, epochs=1, verbose=0)
    count = client.get_json("/v1/datasets")["total"]
    model.fit(scenario.X, scenario.Y, epochs=1, verbose=0)
    assert client.get_json("/v1/datasets")["total"] == count
    # A dict of arrays goes up as one .npz, the same bytes each time.
    both = client.datasets.upload({"x": x, "y": x[:, 0]}, progress=False)
    assert [a["name"] for a in both.arrays] == ["x", "y"]
    assert client.datasets.upload({"x": x, "y": x[:, 0]}, progress=False).id == both.id


BAR = "━" * 20
NUM = r"-?\d+\.\d{4}(e[-+]\d+)?"
LOGS = rf"accuracy: {NUM} - loss: {NUM} - val_accuracy: {NUM} - val_loss: {NUM}"


def test_fit_prints_keras_progress_lines(
    client: fitapi.Client, capsys: pytest.CaptureFixture[str]
) -> None:
    model = client.models.create(scenario.MODEL, seed=3)
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    model.fit(scenario.X, scenario.Y, batch_size=128, epochs=2, validation_split=0.2)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Epoch 1/2" and lines[2] == "Epoch 2/2" and len(lines) == 4, lines
    for line in (lines[1], lines[3]):
        assert re.fullmatch(rf"4/4 {BAR} \d+s \d+(s|ms|us)/step - {LOGS}", line), line

    model.fit(scenario.X, scenario.Y, batch_size=128, epochs=4, initial_epoch=2, verbose=2,
              validation_split=0.2)  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Epoch 3/4" and lines[2] == "Epoch 4/4" and len(lines) == 4, lines
    for line in (lines[1], lines[3]):
        assert re.fullmatch(rf"4/4 - \d+s - \d+(s|ms|us)/step - {LOGS}", line), line

    history = model.fit(scenario.X, scenario.Y, batch_size=128, epochs=1, verbose=0)
    assert capsys.readouterr().out == ""
    assert isinstance(history, fitapi.History) and history.params["steps"] == 4
