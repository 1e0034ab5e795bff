"""The walking-skeleton scenario driven over HTTP, shared by the distributed and embedded
end-to-end tests."""

from __future__ import annotations

import httpx

from tests.e2e.harness import poll, sse_events
from tests.support import scenario


def run_scenario(client: httpx.Client) -> dict[str, object]:
    r = client.post("/v1/models", json={"config": scenario.MODEL, "seed": 3})
    assert r.status_code == 201, r.text
    model = r.json()
    assert model["summary"]["total_params"] == 7
    assert model["summary"]["trainable_params"] == 4
    assert [row["params"] for row in model["summary"]["layers"]] == [3, 2, 2]

    r = client.post(f"/v1/models/{model['id']}/fit", json=scenario.fit_body())
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] in ("queued", "running")

    # Live: the stream delivers every epoch in order, then one status event.
    events = list(sse_events(client, f"/v1/jobs/{job['id']}/events"))
    epochs = [e for e in events if e.get("event") == "epoch"]
    assert events[-1]["event"] == "status"
    assert events[-1]["data"]["status"] == "succeeded", events[-1]
    assert [int(e["id"]) for e in epochs] == list(range(len(epochs)))
    assert set(epochs[0]["data"]["logs"]) == {"accuracy", "loss", "val_accuracy", "val_loss"}

    # Resuming the stream after epoch 1 starts at epoch 2.
    resumed = list(sse_events(client, f"/v1/jobs/{job['id']}/events",
                              headers={"Last-Event-ID": "1"}))  # fmt: skip
    assert int(resumed[0]["id"]) == 2

    job = client.get(f"/v1/jobs/{job['id']}").json()
    history = job["history"]
    n = job["epochs_done"]
    assert job["status"] == "succeeded"
    assert 0 < n < 300, "ThresholdStopping should stop well before 300 epochs"
    assert sorted(history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    assert all(len(v) == n for v in history.values())
    assert history["val_accuracy"][-1] == 1.0
    assert max(history["val_accuracy"][:-1], default=0.0) < 1.0
    assert [e["data"]["logs"] for e in epochs] == [
        {k: history[k][i] for k in history} for i in range(n)
    ]

    logs = client.get(f"/v1/jobs/{job['id']}/logs").json()["items"]
    assert [row["epoch"] for row in logs] == list(range(n))

    # evaluate on the same data and batch size is the last epoch's validation, exactly.
    body = {"x": scenario.X.tolist(), "y": scenario.Y.tolist(), "batch_size": 128}
    r = client.post(f"/v1/models/{model['id']}/evaluate", json=body)
    assert r.status_code == 200, r.text
    result = r.json()
    assert result == {"loss": history["val_loss"][-1], "accuracy": history["val_accuracy"][-1]}

    r = client.post(f"/v1/models/{model['id']}/predict", json={"x": scenario.X.tolist()})
    assert r.status_code == 200, r.text
    predictions = r.json()["predictions"]
    assert len(predictions) == 500 and all(len(p) == 1 and 0 <= p[0] <= 1 for p in predictions)
    return {"model": model, "job": job}


def wait_for(client: httpx.Client, job_id: str, statuses: set[str], timeout: float = 120) -> dict:
    def reached() -> dict | None:
        job: dict = client.get(f"/v1/jobs/{job_id}").json()
        return job if job["status"] in statuses else None

    return poll(reached, f"job {job_id} reaching {statuses}", timeout=timeout)
