"""The seed scenario through the client and over plain HTTP, shared by the client's embedded
and distributed tests."""

from __future__ import annotations

from typing import Any

import fitapi
import httpx
import numpy as np

from tests.e2e.harness import sse_events
from tests.support import scenario


def seed_scenario(client: fitapi.Client) -> tuple[fitapi.Model, fitapi.History]:
    """The README's first scenario, as a Keras user writes it (the fit's seed fixes the
    shuffling, so that two runs can be compared)."""
    model = client.models.create(scenario.MODEL, seed=3)
    model.compile(optimizer={"class_name": "Adam", "config": {"learning_rate": 0.1}},
                  loss="binary_crossentropy", metrics=["accuracy"])  # fmt: skip
    stop = fitapi.callbacks.ThresholdStopping(monitor="val_accuracy", threshold=1.0)
    history = model.fit(scenario.X, scenario.Y, batch_size=128, epochs=300, verbose=0,
                        validation_data=(scenario.X, scenario.Y), callbacks=[stop],
                        seed=3)  # fmt: skip
    assert isinstance(history, fitapi.History)
    return model, history


def raw_scenario(base: str) -> tuple[str, dict[str, Any]]:
    """The same over plain HTTP, as the README's curl lines do it."""
    with httpx.Client(base_url=base, timeout=60) as http:
        model = http.post("/v1/models", json={"config": scenario.MODEL, "seed": 3}).json()
        job = http.post(f"/v1/models/{model['id']}/fit", json=scenario.fit_body(seed=3)).json()
        events = list(sse_events(http, f"/v1/jobs/{job['id']}/events"))
        assert events[-1]["data"]["status"] == "succeeded", events[-1]
        return str(model["id"]), http.get(f"/v1/jobs/{job['id']}").json()


def check_same_as_raw(client: fitapi.Client, base: str) -> None:
    model, history = seed_scenario(client)
    raw_model, raw_job = raw_scenario(base)
    assert history.history == raw_job["history"]
    assert history.epoch == list(range(raw_job["epochs_done"]))
    assert history.params == {"verbose": 0, "epochs": 300, "steps": 4}
    assert history.history["val_accuracy"][-1] == 1.0
    result = model.evaluate(scenario.X, scenario.Y, batch_size=128, return_dict=True)
    assert result == {"loss": history.history["val_loss"][-1],
                      "accuracy": history.history["val_accuracy"][-1]}  # fmt: skip
    assert model.evaluate(scenario.X, scenario.Y, batch_size=128) == [
        result["loss"], result["accuracy"]]  # fmt: skip
    predictions = model.predict(scenario.X)
    assert predictions.shape == (500, 1) and predictions.dtype == np.float32
    raw = client.models.get(raw_model).predict(scenario.X)
    assert np.array_equal(predictions, raw)
