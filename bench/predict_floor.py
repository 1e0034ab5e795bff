"""The floor `bench_predict` compares fitapi's predict with: a minimal FastAPI endpoint holding
one Dense-ReLU-Dense-softmax model's weights in memory, with no database, authentication,
middleware or validation. JSON: `json.loads` -> torch -> `json.dumps`; an `.npy` body
(`Content-Type: application/x-npy`): `np.load` -> torch -> `np.save`. It runs the layers as the
engine's Dense does (`torch.addmm`, then the activation), so both answer the same bits.

    FLOOR_WEIGHTS=weights.npz python -m uvicorn bench.predict_floor:app --port 8001

`weights.npz` is what `GET /v1/models/{id}/weights` returns: arr_0..arr_3, Keras's order.
"""

from __future__ import annotations

import io
import json
import os

import numpy as np
import torch
from fastapi import FastAPI, Request, Response

NPY = "application/x-npy"


def _load(path: str) -> list[torch.Tensor]:
    with np.load(path) as z:
        return [torch.from_numpy(z[f"arr_{i}"]) for i in range(len(z.files))]


W1, B1, W2, B2 = _load(os.environ["FLOOR_WEIGHTS"])
app = FastAPI()


def forward(x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        h = torch.relu(torch.addmm(B1, x, W1))
        return torch.softmax(torch.addmm(B2, h, W2), dim=-1)


@app.post("/predict")
async def predict(request: Request) -> Response:
    body = await request.body()
    if request.headers.get("content-type", "").startswith(NPY):
        x = torch.from_numpy(np.load(io.BytesIO(body), allow_pickle=False))
    else:
        x = torch.tensor(json.loads(body)["x"], dtype=torch.float32)
    out = forward(x).numpy()
    if NPY in request.headers.get("accept", ""):
        buf = io.BytesIO()
        np.save(buf, out, allow_pickle=False)
        return Response(buf.getvalue(), media_type=NPY)
    return Response(json.dumps({"predictions": out.tolist()}), media_type="application/json")


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}
