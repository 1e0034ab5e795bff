"""Max pooling of channels_last inputs on the CPU runs on their memory as it is, not on the
contiguous channels-first copy Keras's torch backend makes: bit for bit the same outputs,
gradients and layouts as Keras's path, which this file keeps as the reference."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from app.engine.layers import pooling
from app.engine.layers.spatial import to_channels_first, to_channels_last
from app.engine.models.model import Model
from app.engine.training.compile import CompileSpec
from app.engine.training.fit_args import FitArgs
from app.engine.training.trainer import Trainer


def _keras_path(layer: Any, x: torch.Tensor) -> torch.Tensor:
    """Keras's: channels-first and contiguous, pooled, permuted back."""
    pool = pooling._MAX[layer.rank]
    return to_channels_last(pool(to_channels_first(x), layer.pool_size, layer.strides, 0))


def _inputs(shape: tuple[int, ...], kind: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(shape, generator=g)
    if kind == "ties":
        x = torch.round(x * 2) / 2  # most windows hold equal maxima
    if kind == "nan":
        x.view(-1)[::7] = float("nan")
    if kind == "conv":  # a convolution's output: channels-first shape, channels_last memory
        layout = torch.channels_last if x.dim() == 4 else torch.channels_last_3d
        first = x.movedim(-1, 1).contiguous(memory_format=layout)
        return first.movedim(1, -1)
    return x


CASES = [
    ("MaxPooling2D", (4, 9, 9, 3), {}),
    ("MaxPooling2D", (4, 10, 10, 5), {"pool_size": [3, 3], "strides": [1, 1]}),
    ("MaxPooling2D", (4, 13, 11, 2), {"pool_size": [2, 3], "strides": [3, 2]}),
    ("MaxPooling3D", (2, 6, 7, 6, 3), {}),
    ("MaxPooling3D", (2, 6, 6, 6, 2), {"pool_size": [3, 3, 3], "strides": [2, 1, 2]}),
]


@pytest.mark.parametrize("kind", ["random", "ties", "nan", "conv"])
@pytest.mark.parametrize(("name", "shape", "config"), CASES)
def test_max_pooling_matches_kerass_layout_path_bit_for_bit(
    name: str, shape: tuple[int, ...], config: dict[str, Any], kind: str
) -> None:
    layer = getattr(pooling, name).from_config(config, (), name="pool")
    layer.build((None, *shape[1:]), torch.Generator(), ())
    leaves = [_inputs(shape, kind).requires_grad_() for _ in range(2)]
    # The inputs as a layer gets them, with their memory layout kept (`* 1` keeps a
    # channels_last one's), and hooks that see their gradients as passed back: a leaf's
    # accumulated gradient would be laid out like the leaf whatever came back.
    ours_x, ref_x = (leaf * 1 for leaf in leaves)
    assert ours_x.stride() == leaves[0].stride()
    grads: list[torch.Tensor] = []
    for t in (ours_x, ref_x):
        t.register_hook(grads.append)
    ours, ref = layer(ours_x), _keras_path(layer, ref_x)
    assert torch.equal(torch.nan_to_num(ours, nan=-1.0), torch.nan_to_num(ref, nan=-1.0))
    assert ours.stride() == ref.stride()  # what later layers see is laid out as Keras's
    grad = torch.rand(ref.shape, generator=torch.Generator().manual_seed(1))
    ours.backward(grad)
    ref.backward(grad)
    assert torch.equal(grads[0], grads[1])
    assert grads[0].stride() == grads[1].stride()  # and what earlier layers get back


def _seq(shape: list[int], *layers: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    inputs = [{"class_name": "InputLayer", "config": {"batch_shape": [None, *shape]}}]
    rest = [{"class_name": c, "config": k} for c, k in layers]
    return {"class_name": "Sequential", "config": {"name": "m", "layers": inputs + rest}}


def test_a_convolutional_fit_is_bit_identical_to_kerass_layout_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Conv2D, pooling, a normalization and a global pooling after it: every weight and every
    logged value of a few epochs are the same bits either way."""
    config = _seq([10, 10, 2],
                  ("Conv2D", {"filters": 4, "kernel_size": [3, 3], "activation": "relu"}),
                  ("MaxPooling2D", {}), ("BatchNormalization", {}),
                  ("Conv2D", {"filters": 6, "kernel_size": [2, 2], "activation": "relu"}),
                  ("MaxPooling2D", {"pool_size": [2, 2], "strides": [1, 1]}),
                  ("GlobalAveragePooling2D", {}),
                  ("Dense", {"units": 3, "activation": "softmax"}))  # fmt: skip
    compile_ = {"optimizer": "adam", "loss": "sparse_categorical_crossentropy",
                "metrics": ["accuracy"]}  # fmt: skip
    rng = np.random.default_rng(0)
    x = np.round(rng.random((60, 10, 10, 2), dtype=np.float32) * 4) / 4
    y = rng.integers(0, 3, 60)

    def fit() -> tuple[list[np.ndarray], dict[str, list[float]]]:
        trainer = Trainer(Model.from_config(config, seed=0), CompileSpec.parse(compile_))
        history = trainer.fit(x, y, args=FitArgs(batch_size=16, epochs=3, seed=0))
        return trainer.model.get_weights(), history.history

    ours = fit()
    original = pooling._Pooling.forward

    def kerass(self: Any, x: torch.Tensor, training: bool = False) -> torch.Tensor:
        if self.mode == "max" and self.data_format == "channels_last":
            return _keras_path(self, x)
        return original(self, x, training)

    monkeypatch.setattr(pooling._Pooling, "forward", kerass)
    reference = fit()
    assert ours[1] == reference[1]
    for a, b in zip(ours[0], reference[0], strict=True):
        assert np.array_equal(a, b)
