"""A cancel acknowledged during the last epoch is honoured: the heartbeat that would bring the
flag is slowed down so that only the final commit can see it, and the job still ends cancelled
with the model's weights as before the fit. A cancel after the final commit is a 409."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.e2e.harness import poll
from tests.faults.stack import launch
from tests.support import scenario

pytestmark = pytest.mark.e2e


def test_a_cancel_in_the_last_epoch_is_honoured_and_a_late_one_refused(
    pg_database: Callable[[], str], redis_url: str, tmp_path: Path
) -> None:
    db = pg_database()
    with launch(db, redis_url, tmp_path, JOB_HEARTBEAT_S="60", JOB_LEASE_S="600") as stack:
        client = stack.client
        model = client.post("/v1/models", json={"config": scenario.MODEL, "seed": 3}).json()
        before = stack.predict(model["id"])
        x = np.tile(scenario.X, (4, 1))
        y = np.tile(scenario.Y, 4)
        body = {**scenario.fit_body(epochs=2, callbacks=[]), "x": x.tolist(), "y": y.tolist(),
                "batch_size": 1}  # fmt: skip
        job = client.post(f"/v1/models/{model['id']}/fit", json=body).json()
        poll(lambda: stack.job(job["id"])["epochs_done"] >= 1, "the first epoch")
        cancel = client.post(f"/v1/jobs/{job['id']}/cancel")
        assert cancel.status_code == 200 and cancel.json()["cancel_requested"] is True
        ended = stack.wait(job["id"])
        assert ended["status"] == "cancelled", ended
        assert ended["epochs_done"] == 2  # it trained to the end; the commit saw the cancel
        assert stack.predict(model["id"]) == before

        _, done_id = stack.fit(2)
        assert stack.wait(done_id)["status"] == "succeeded"
        late = client.post(f"/v1/jobs/{done_id}/cancel")
        assert late.status_code == 409, late.text
