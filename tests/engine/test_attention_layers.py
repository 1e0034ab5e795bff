"""MultiHeadAttention, Attention, AdditiveAttention and EinsumDense at the layer level against
Keras's own layers: outputs (with masks, causal masking and attention axes), output masks,
gradients, weight order, config round trips both ways, config errors, seeded dropout, and one
Functional model built from Keras's own JSON.

These layers take several inputs, so a Sequential cannot hold them; EinsumDense is also covered
by tests/support/layer_cases/einsum_dense.py through the generic Sequential comparison."""

from __future__ import annotations

import json
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import torch

from app.engine.config.errors import ConfigError
from app.engine.layers import LAYERS, Layer
from app.engine.models.model import Model

#: The layers this file compares with Keras (they cannot sit in a Sequential layer case).
COVERED = ("MultiHeadAttention", "Attention", "AdditiveAttention")
RTOL = ATOL = 1e-6

Q_MASK = [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
V_MASK = [[1, 1, 0, 0, 0], [1, 1, 1, 1, 0]]


def build_ours(class_name: str, config: dict[str, Any], shape: Any, seed: int = 0) -> Layer:
    """Our layer from a Keras-style entry, built as a model would build it."""
    layer_cls, cfg, loc = LAYERS.parse({"class_name": class_name, "config": config}, ())
    layer = layer_cls.from_config(cfg, loc, name=cfg.get("name", "layer"))
    layer.output_shape = layer.build(shape, torch.Generator().manual_seed(seed), loc)
    return layer


def set_keras_weights(layer: Layer, weights: Sequence[np.ndarray]) -> None:
    """Copy Keras's `get_weights()` into our layer, in `keras_weights()` order."""
    ours = layer.keras_weights()
    assert len(ours) == len(weights)
    with torch.no_grad():
        for (name, tensor), value in zip(ours, weights, strict=True):
            assert tuple(tensor.shape) == value.shape, name
            tensor.copy_(torch.as_tensor(value))


def _tensor(rng: np.random.Generator, shape: Sequence[int]) -> torch.Tensor:
    return torch.as_tensor(rng.normal(size=shape).astype(np.float32))


def _masked(keras: ModuleType, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """A copy of `x` carrying a Keras mask (what Masking or Embedding(mask_zero) attach)."""
    y = x.clone()
    if mask is not None:
        keras.src.backend.set_keras_mask(y, mask)
    return y


def _gap(got: torch.Tensor, want: torch.Tensor) -> float:
    np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=RTOL, atol=ATOL)
    return float((got - want).detach().abs().max())


def _same_config(ours: dict[str, Any], theirs: dict[str, Any]) -> None:
    """Our canonical config equals what Keras writes, for every key Keras writes (dtype policy
    objects and the initializers' null input_axes/output_axes aside)."""
    theirs = json.loads(json.dumps(theirs))
    assert set(ours) == set(theirs)
    for key, value in theirs.items():
        if key == "dtype":
            continue
        if isinstance(value, dict) and "class_name" in value:  # an initializer
            inner = {k: v for k, v in value["config"].items()
                     if not (k in ("input_axes", "output_axes") and v is None)}  # fmt: skip
            assert ours[key] == {"class_name": value["class_name"], "config": inner}, key
        else:
            assert ours[key] == value, key


# -- MultiHeadAttention ------------------------------------------------------------------------
# (config, query shape, value shape, key shape or None, masks on (query, value), causal)
MHA_CASES: dict[str, tuple[dict[str, Any], tuple[int, ...], tuple[int, ...], Any, str, bool]] = {
    "self": ({"num_heads": 2, "key_dim": 3}, (2, 5, 4), (2, 5, 4), None, "", False),
    "cross_key": ({"num_heads": 3, "key_dim": 2, "value_dim": 4, "output_shape": 6},
                  (2, 4, 5), (2, 6, 7), (2, 6, 3), "", False),
    "no_bias_out_2d": ({"num_heads": 2, "key_dim": 3, "use_bias": False, "output_shape": [2, 3]},
                       (2, 4, 5), (2, 6, 7), None, "", False),
    "gate": ({"num_heads": 2, "key_dim": 3, "use_gate": True}, (2, 4, 5), (2, 6, 7), None, "",
             False),
    "causal": ({"num_heads": 2, "key_dim": 3}, (2, 5, 4), (2, 5, 6), None, "", True),
    "causal_dropout": ({"num_heads": 2, "key_dim": 3, "dropout": 0.3}, (2, 5, 4), (2, 5, 6),
                       None, "", True),
    "masks": ({"num_heads": 2, "key_dim": 3}, (2, 5, 4), (2, 5, 6), None, "qv", False),
    "value_mask_key": ({"num_heads": 2, "key_dim": 3}, (2, 5, 4), (2, 5, 6), (2, 5, 3), "v",
                       False),
    "masks_causal": ({"num_heads": 2, "key_dim": 3}, (2, 5, 4), (2, 5, 6), None, "qv", True),
    "masks_dropout": ({"num_heads": 2, "key_dim": 3, "dropout": 0.1}, (2, 5, 4), (2, 5, 6),
                      None, "qv", False),
    "sliding_window": ({"num_heads": 2, "key_dim": 3, "sliding_window": 2}, (2, 5, 4),
                       (2, 5, 4), None, "", True),
    "rank4_default_axes": ({"num_heads": 2, "key_dim": 3}, (2, 3, 4, 5), (2, 3, 2, 7), None, "",
                           False),
    "rank4_axis_2": ({"num_heads": 2, "key_dim": 3, "attention_axes": 2}, (2, 3, 4, 5),
                     (2, 3, 2, 7), None, "", False),
    "rank4_axis_2_masks": ({"num_heads": 2, "key_dim": 3, "attention_axes": [-2]}, (2, 3, 5, 4),
                           (2, 3, 5, 4), None, "qv", False),
    "rank5_axes": ({"num_heads": 2, "key_dim": 2, "attention_axes": [2, 3], "dropout": 0.2},
                   (2, 2, 3, 2, 4), (2, 2, 2, 3, 5), None, "", False),
    "initializers": ({"num_heads": 2, "key_dim": 3, "kernel_initializer": "he_normal",
                      "bias_initializer": {"class_name": "Constant", "config": {"value": 0.5}}},
                     (2, 4, 5), (2, 4, 5), None, "", False),
}  # fmt: skip


def _mha_masks(kind: str, q_shape: tuple[int, ...]) -> list[torch.Tensor | None]:
    def mask(rows: list[list[int]]) -> torch.Tensor:
        m = torch.tensor(rows, dtype=torch.bool)
        return m if len(q_shape) == 3 else m.unsqueeze(1).expand(-1, q_shape[1], -1).clone()

    return [mask(Q_MASK) if "q" in kind else None, mask(V_MASK) if "v" in kind else None, None]


def _run_mha(keras: ModuleType, case: str) -> tuple[Any, Layer, list[Any], list[Any], bool]:
    config, q_shape, v_shape, k_shape, mask_kind, causal = MHA_CASES[case]
    rng = np.random.default_rng(3)
    inputs = [_tensor(rng, q_shape), _tensor(rng, v_shape)]
    inputs.append(None if k_shape is None else _tensor(rng, k_shape))
    masks = _mha_masks(mask_kind, q_shape)
    km = keras.layers.MultiHeadAttention(**config, name="mha")
    k_in = [None if t is None else _masked(keras, t, m) for t, m in zip(inputs, masks, strict=True)]
    want = km(k_in[0], k_in[1], k_in[2], use_causal_mask=causal)
    shapes = [None if t is None else (None, *t.shape[1:]) for t in inputs]
    ours = build_ours("MultiHeadAttention", {**config, "name": "mha"}, shapes)
    set_keras_weights(ours, km.get_weights())
    return km, ours, inputs, [want, masks], causal


@pytest.mark.parametrize("case", sorted(MHA_CASES))
def test_multi_head_attention_matches_keras(keras: ModuleType, case: str) -> None:
    km, ours, inputs, (want, masks), causal = _run_mha(keras, case)
    mask = None if all(m is None for m in masks) else masks
    with torch.no_grad():
        got = ours(inputs, False, mask=mask, use_causal_mask=causal)
    _gap(got, want)
    assert ours.output_shape == km.compute_output_shape(
        (None, *inputs[0].shape[1:]), (None, *inputs[1].shape[1:]),
        None if inputs[2] is None else (None, *inputs[2].shape[1:]),
    )  # fmt: skip
    keras_mask = getattr(want, "_keras_mask", None)
    our_mask = ours.compute_mask(inputs, mask)
    assert (our_mask is None) == (keras_mask is None)
    if keras_mask is not None:
        assert torch.equal(our_mask, keras_mask)
    assert [f"mha/{n}" for n, _ in ours.keras_weights()] == [w.path for w in km.weights]
    _same_config(ours.get_config(), km.get_config())


@pytest.mark.parametrize("case", ["self", "masks", "causal", "masks_dropout", "gate"])
def test_multi_head_attention_gradients_match_keras(keras: ModuleType, case: str) -> None:
    """Both attention routes (torch's fused kernel, Keras's einsum route) train alike."""
    km, ours, inputs, (want, masks), causal = _run_mha(keras, case)
    mask = None if all(m is None for m in masks) else masks
    got = ours(inputs, False, mask=mask, use_causal_mask=causal)
    upstream = _tensor(np.random.default_rng(5), tuple(got.shape))
    (got * upstream).sum().backward()
    (want * upstream).sum().backward()
    for (name, ours_w), keras_w in zip(ours.keras_weights(), km.weights, strict=True):
        assert ours_w.grad is not None, name
        np.testing.assert_allclose(
            ours_w.grad.numpy(), keras_w.value.grad.numpy(), rtol=RTOL, atol=1e-7, err_msg=name
        )


def test_keras_loads_our_multi_head_attention_config(keras: ModuleType) -> None:
    config = {"num_heads": 2, "key_dim": 3, "value_dim": 2, "output_shape": 4, "use_gate": True,
              "attention_axes": -2, "name": "mha"}  # fmt: skip
    ours = build_ours("MultiHeadAttention", config, [(None, 3, 4, 5), (None, 3, 2, 6), None])
    km = keras.layers.MultiHeadAttention.from_config(json.loads(json.dumps(ours.get_config())))
    rng = np.random.default_rng(4)
    q, v = _tensor(rng, (2, 3, 4, 5)), _tensor(rng, (2, 3, 2, 6))
    km(q, v)  # builds it
    km.set_weights([t.detach().numpy() for _, t in ours.keras_weights()])
    with torch.no_grad():
        _gap(ours([q, v, None], False), km(q, v))
    again = build_ours("MultiHeadAttention", ours.get_config(), [(None, 3, 4, 5), (None, 3, 2, 6),
                                                                  None])  # fmt: skip
    assert again.get_config() == ours.get_config()
    # Keras's own config (tuples, dtype policy, initializer axes) is read back as well.
    mirrored = build_ours("MultiHeadAttention", json.loads(json.dumps(km.get_config())),
                          [(None, 3, 4, 5), (None, 3, 2, 6), None])  # fmt: skip
    assert mirrored.get_config() == ours.get_config()
    assert ours.h5_paths()[:2] == ["query_dense/vars/0", "query_dense/vars/1"]


def test_multi_head_attention_dropout_draws_from_the_generator(keras: ModuleType) -> None:
    config = {"num_heads": 2, "key_dim": 4, "dropout": 0.5}
    ours = build_ours("MultiHeadAttention", config, [(None, 6, 8), (None, 7, 8), None])
    rng = np.random.default_rng(6)
    q, v = _tensor(rng, (3, 6, 8)), _tensor(rng, (3, 7, 8))

    def train(seed: int) -> torch.Tensor:
        ours.generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            return ours([q, v, None], True)

    assert torch.equal(train(1), train(1))
    assert not torch.allclose(train(1), train(2))
    with torch.no_grad():
        assert not torch.allclose(train(1), ours([q, v, None], False))
        # Outside training the dropout is off and Keras's einsum route gives the same numbers.
        km = keras.layers.MultiHeadAttention(**config)
        km(q, v)
        set_keras_weights(ours, km.get_weights())
        _gap(ours([q, v, None], False), km(q, v, training=False))


# -- Attention and AdditiveAttention -----------------------------------------------------------
# (class, config, query shape, value shape, key shape or None, masks on (query, value), causal)
AttCase = tuple[str, dict[str, Any], tuple[int, ...], tuple[int, ...], Any, str, bool]
ATT_CASES: dict[str, AttCase] = {
    "dot": ("Attention", {}, (2, 5, 4), (2, 6, 3), (2, 6, 4), "", False),
    "dot_scale_qv": ("Attention", {"use_scale": True}, (2, 5, 4), (2, 6, 4), None, "qv", False),
    "concat": ("Attention", {"score_mode": "concat"}, (2, 5, 4), (2, 6, 4), None, "v", False),
    "concat_scale": ("Attention", {"score_mode": "concat", "use_scale": True}, (2, 5, 4),
                     (2, 6, 4), None, "q", False),
    "causal": ("Attention", {}, (2, 5, 4), (2, 5, 4), None, "", True),
    "causal_masks": ("Attention", {"use_scale": True}, (2, 5, 4), (2, 5, 3), (2, 5, 4), "qv",
                     True),
    "dropout_inference": ("Attention", {"dropout": 0.4, "seed": 3}, (2, 5, 4), (2, 5, 4), None,
                          "v", False),
    "rank4": ("Attention", {}, (2, 3, 5, 4), (2, 3, 6, 4), None, "", False),
    "additive": ("AdditiveAttention", {}, (2, 5, 4), (2, 6, 3), (2, 6, 4), "qv", False),
    "additive_no_scale": ("AdditiveAttention", {"use_scale": False}, (2, 5, 4), (2, 6, 4), None,
                          "", True),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(ATT_CASES))
def test_attention_matches_keras(keras: ModuleType, case: str) -> None:
    class_name, config, q_shape, v_shape, k_shape, mask_kind, causal = ATT_CASES[case]
    rng = np.random.default_rng(7)
    inputs = [_tensor(rng, q_shape), _tensor(rng, v_shape)]
    if k_shape is not None:
        inputs.append(_tensor(rng, k_shape))
    masks: list[Any] = [None] * len(inputs)
    if "q" in mask_kind:
        masks[0] = torch.tensor(Q_MASK, dtype=torch.bool)
    if "v" in mask_kind:
        masks[1] = torch.tensor([r + [1] * (v_shape[1] - 5) for r in V_MASK], dtype=torch.bool)
    km = getattr(keras.layers, class_name)(**config)
    k_in = [_masked(keras, t, m) for t, m in zip(inputs, masks, strict=True)]
    want = km(k_in, use_causal_mask=causal)
    ours = build_ours(class_name, config, [(None, *t.shape[1:]) for t in inputs], seed=1)
    set_keras_weights(ours, km.get_weights())
    mask = None if all(m is None for m in masks) else masks
    with torch.no_grad():
        got = ours(inputs, False, mask=mask, use_causal_mask=causal)
    _gap(got, want)
    assert ours.output_shape == km.compute_output_shape([(None, *t.shape[1:]) for t in inputs])
    keras_mask = getattr(want, "_keras_mask", None)
    our_mask = ours.compute_mask(inputs, mask)
    assert (our_mask is None) == (keras_mask is None)
    if keras_mask is not None:
        assert torch.equal(our_mask, keras_mask)
    _same_config(ours.get_config() | {"name": km.name}, km.get_config())
    again = build_ours(class_name, json.loads(json.dumps(km.get_config())),
                       [(None, *t.shape[1:]) for t in inputs])  # fmt: skip
    assert again.layer_config() == ours.layer_config()


def test_attention_dropout_draws_from_the_generator() -> None:
    ours = build_ours("Attention", {"dropout": 0.5}, [(None, 6, 4), (None, 7, 4)])
    rng = np.random.default_rng(8)
    q, v = _tensor(rng, (3, 6, 4)), _tensor(rng, (3, 7, 4))

    def train(seed: int) -> torch.Tensor:
        ours.generator = torch.Generator().manual_seed(seed)
        return ours([q, v], True)

    assert torch.equal(train(1), train(1))
    assert not torch.allclose(train(1), train(2))
    assert not torch.allclose(train(1), ours([q, v], False))


def test_attention_layers_are_covered_here() -> None:
    """The generic Sequential comparison cannot hold these; this file covers each of them."""
    assert set(COVERED) <= set(LAYERS.names())
    covered = {"MultiHeadAttention"} | {case[0] for case in ATT_CASES.values()}
    assert covered == set(COVERED)


# -- EinsumDense at the layer level -------------------------------------------------------------
EINSUM_CASES: list[tuple[dict[str, Any], tuple[int | None, ...]]] = [
    ({"equation": "ab,bc->ac", "output_shape": 4, "bias_axes": "c"}, (None, 3)),
    ({"equation": "abc,cd->abd", "output_shape": [None, 4], "bias_axes": "d"}, (None, 5, 3)),
    ({"equation": "abc,cd->abd", "output_shape": [5, 4]}, (None, 5, 3)),
    ({"equation": "...c,cd->...d", "output_shape": 4, "bias_axes": "d"}, (None, 2, 3, 5)),
    ({"equation": "...bc,cde->...bde", "output_shape": [2, 2, 3], "bias_axes": "be"},
     (None, 4, 2, 5)),
    ({"equation": "ab...,bc->ac...", "output_shape": [3], "bias_axes": "c"}, (None, 4, 2, 2)),
    ({"equation": "abcd,cde->abe", "output_shape": [None, 3], "bias_axes": "e",
      "activation": "relu"}, (None, 2, 3, 4)),
    ({"equation": "ab,bcd->acd", "output_shape": [2, 3], "bias_axes": "cd"}, (None, 4)),
    ({"equation": "aBc,cD->aBD", "output_shape": [None, 2]}, (None, 3, 4)),
]  # fmt: skip


@pytest.mark.parametrize(("config", "shape"), EINSUM_CASES)
def test_einsum_dense_matches_keras(keras: ModuleType, config: dict[str, Any], shape: Any) -> None:
    km = keras.layers.EinsumDense(**config)
    rng = np.random.default_rng(9)
    x = _tensor(rng, (3, *shape[1:]))
    want = km(x)
    ours = build_ours("EinsumDense", config, shape)
    assert ours.output_shape == km.compute_output_shape(shape)  # Keras's own shape arithmetic
    assert [tuple(t.shape) for _, t in ours.keras_weights()] == [w.shape for w in km.weights]
    set_keras_weights(ours, km.get_weights())
    with torch.no_grad():
        _gap(ours(x), want)
    _same_config(ours.get_config() | {"name": km.name}, km.get_config())


def test_einsum_dense_fans_follow_its_axes() -> None:
    """Keras gives variance-scaling initializers EinsumDense's input and output axes: a
    (64, 8, 16) kernel for "abc,cde->abde" has fan_in 64 and fan_out 128."""
    config = {"equation": "abc,cde->abde", "output_shape": [None, 8, 16],
              "kernel_initializer": "glorot_uniform"}  # fmt: skip
    kernel = build_ours("EinsumDense", config, (None, 3, 64)).kernel
    limit = np.sqrt(6 / (64 + 128))
    assert kernel.abs().max() <= limit and kernel.abs().max() > 0.95 * limit


# -- config errors name the field ---------------------------------------------------------------
MHA_SHAPES = [(None, 4, 5), (None, 6, 7), None]


@pytest.mark.parametrize(
    ("class_name", "config", "shape", "key", "text"),
    [
        ("MultiHeadAttention", {"key_dim": 2}, MHA_SHAPES, "num_heads", "required"),
        ("MultiHeadAttention", {"num_heads": 0, "key_dim": 2}, MHA_SHAPES, "num_heads", ">= 1"),
        ("MultiHeadAttention", {"num_heads": 2, "key_dim": 2.5}, MHA_SHAPES, "key_dim", "integer"),
        ("MultiHeadAttention", {"num_heads": 2, "key_dim": 2, "dropout": 1.0}, MHA_SHAPES,
         "dropout", "[0, 1)"),
        ("MultiHeadAttention", {"num_heads": 2, "key_dim": 2, "output_shape": [3, "x"]},
         MHA_SHAPES, "output_shape", "integer"),
        ("MultiHeadAttention", {"num_heads": 2, "key_dim": 2, "attention_axes": 0}, MHA_SHAPES,
         "attention_axes", "non-batch"),
        ("MultiHeadAttention", {"num_heads": 2, "key_dim": 2, "attention_axes": [1, 1]},
         [(None, 3, 4, 5), (None, 3, 4, 5), None], "attention_axes", "distinct"),
        ("MultiHeadAttention", {"num_heads": 2, "key_dim": 2, "attention_axes": "x"}, MHA_SHAPES,
         "attention_axes", "integer"),
        ("MultiHeadAttention", {"num_heads": 2, "key_dim": 2, "kernel_regularizer": "l3"},
         MHA_SHAPES, "kernel_regularizer", "unknown regularizer"),
        ("MultiHeadAttention", {"num_heads": 2, "key_dim": 2,
                                "kernel_regularizer": "orthogonal_regularizer"},
         MHA_SHAPES, "kernel_regularizer", "rank-2 weights only"),
        ("MultiHeadAttention", {"num_heads": 2, "key_dim": 2,
                                "activity_regularizer": "orthogonal_regularizer"},
         MHA_SHAPES, "activity_regularizer", "rank-2 weights"),
        ("MultiHeadAttention", {"num_heads": 2, "key_dim": 2, "bias_constraint": "clip"},
         MHA_SHAPES, "bias_constraint", "unknown constraint"),
        ("MultiHeadAttention", {"num_heads": 2, "key_dim": 2, "flash_attention": True},
         MHA_SHAPES, "flash_attention", "null or false"),
        ("MultiHeadAttention", {"num_heads": 2, "key_dim": 2, "sliding_window": 0}, MHA_SHAPES,
         "sliding_window", ">= 1"),
        ("MultiHeadAttention", {"num_heads": 2, "key_dim": 2, "kernel_initializer": "nope"},
         MHA_SHAPES, "kernel_initializer", "unknown initializer"),
        ("MultiHeadAttention", {"num_heads": 2, "key_dim": 2}, [(None, 4, 5), (None, 6, 7),
         (None, 5, 7)], None, "all but the last axis"),
        ("MultiHeadAttention", {"num_heads": 2, "key_dim": 2}, [(None, 5), (None, 5), None], None,
         "rank"),
        ("MultiHeadAttention", {"num_heads": 2, "key_dim": 2}, [(None, 4, None), (None, 6, 7),
         None], None, "known last axes"),
        ("Attention", {"score_mode": "bahdanau"}, [(None, 4, 5), (None, 6, 5)], "score_mode",
         "one of"),
        ("Attention", {"dropout": -0.1}, [(None, 4, 5), (None, 6, 5)], "dropout", ">= 0"),
        ("Attention", {"use_scale": "yes"}, [(None, 4, 5), (None, 6, 5)], "use_scale", "true"),
        ("Attention", {}, [(None, 4, 5), (None, 6, 3)], None, "same last dimension"),
        ("Attention", {}, [(None, 4, 5), (None, 6, 5), (None, 7, 5)], None, "same length"),
        ("Attention", {}, [(None, 4, 5)], None, "[query, value]"),
        ("AdditiveAttention", {"score_mode": "dot"}, [(None, 4, 5), (None, 6, 5)], "score_mode",
         "unknown argument"),
        ("AdditiveAttention", {}, [(None, 4, None), (None, 6, None)], None, "known query"),
        ("EinsumDense", {"output_shape": 3}, (None, 4), "equation", "required"),
        ("EinsumDense", {"equation": "ab,bc->ac"}, (None, 4), "output_shape", "required"),
        ("EinsumDense", {"equation": "ab,bc->ac;import os", "output_shape": 3}, (None, 4),
         "equation", "letters"),
        ("EinsumDense", {"equation": "a" * 70 + ",bc->ac", "output_shape": 3}, (None, 4),
         "equation", "at most"),
        ("EinsumDense", {"equation": "ab,bc,cd->ad", "output_shape": 3}, (None, 4), "equation",
         "one ','"),
        ("EinsumDense", {"equation": "ab,bc->ac->d", "output_shape": 3}, (None, 4), "equation",
         "one ','"),
        ("EinsumDense", {"equation": "...b,bc->c", "output_shape": 3}, (None, 4), "equation",
         "letters"),
        ("EinsumDense", {"equation": "a...b,bc->a...c", "output_shape": 3}, (None, 4),
         "equation", "letters"),
        ("EinsumDense", {"equation": "b...,bc->c...", "output_shape": 3}, (None, 4), "equation",
         "two input letters"),
        ("EinsumDense", {"equation": "ab,bb->ab", "output_shape": 3}, (None, 4), "equation",
         "repeat"),
        ("EinsumDense", {"equation": "ab,bc->ad", "output_shape": 3}, (None, 4), "equation",
         "'d'"),
        ("EinsumDense", {"equation": "ab,bcx->ac", "output_shape": 3}, (None, 4), "equation",
         "'x'"),
        ("EinsumDense", {"equation": 5, "output_shape": 3}, (None, 4), "equation", "string"),
        ("EinsumDense", {"equation": "ab,bc->ac", "output_shape": 3, "bias_axes": "b"},
         (None, 4), "bias_axes", "not an output"),
        ("EinsumDense", {"equation": "ab,bc->ac", "output_shape": 3, "bias_axes": ""},
         (None, 4), "bias_axes", "letters"),
        ("EinsumDense", {"equation": "ab,bc->ac", "output_shape": [3, 4]}, (None, 4),
         "output_shape", "needs 1"),
        ("EinsumDense", {"equation": "ab,bc->ac", "output_shape": 0}, (None, 4), "output_shape",
         "positive integer"),
        ("EinsumDense", {"equation": "ab,bc->ac", "output_shape": [None]}, (None, 4), None,
         "known size"),
        ("EinsumDense", {"equation": "abc,cd->abd", "output_shape": [5, 2]}, (None, 4, 3),
         "output_shape", "the input has 4"),
        ("EinsumDense", {"equation": "ab,bc->ac", "output_shape": 3}, (None, 4, 3), "equation",
         "rank 3"),
        ("EinsumDense", {"equation": "ab,bc->ac", "output_shape": 3}, (None, None), None,
         "known size"),
        ("EinsumDense", {"equation": "ab,bc->ac", "output_shape": 1 << 20}, (None, 1 << 10),
         None, "larger than"),
        ("EinsumDense", {"equation": "ab,bc->ac", "output_shape": 3, "lora_rank": 2}, (None, 4),
         "lora_rank", "not supported"),
    ],
)  # fmt: skip
def test_config_errors_name_the_field(
    class_name: str, config: dict[str, Any], shape: Any, key: str | None, text: str
) -> None:
    with pytest.raises(ConfigError) as info:
        build_ours(class_name, config, shape)
    assert info.value.loc == (("config",) if key is None else ("config", key))
    assert text in info.value.message


@pytest.mark.parametrize("class_name", COVERED)
def test_call_options_are_checked(class_name: str) -> None:
    config = {"num_heads": 1, "key_dim": 2} if class_name == "MultiHeadAttention" else {}
    shapes: list[Any] = [(None, 3, 2), (None, 3, 2)]
    layer = build_ours(class_name, config, [*shapes, None] if class_name[0] == "M" else shapes)
    layer.check_options({"use_causal_mask": True}, ("node",))
    with pytest.raises(ConfigError) as info:
        layer.check_options({"return_attention_scores": True}, ("node",))
    assert info.value.loc == ("node", "return_attention_scores")
    with pytest.raises(ConfigError) as info:
        layer.check_options({"use_causal_mask": "yes"}, ("node",))
    assert info.value.loc == ("node", "use_causal_mask")
    x = [torch.zeros(1, 3, 2), torch.zeros(1, 3, 2)]
    with pytest.raises(ConfigError):
        layer([*x, None] if class_name[0] == "M" else x, False, return_attention_scores=True)


# -- in a Functional model ----------------------------------------------------------------------
def test_functional_model_with_attention_matches_keras(keras: ModuleType) -> None:
    """Keras's own to_json() of a masked encoder-decoder style graph: named MHA inputs, causal
    self-attention, Attention on a list, EinsumDense; outputs and the output mask match."""
    q, v = keras.Input((5, 4), name="q"), keras.Input((6, 3), name="v")
    mq, mv = keras.layers.Masking(0.0)(q), keras.layers.Masking(0.0)(v)
    a = keras.layers.MultiHeadAttention(num_heads=2, key_dim=3, dropout=0.1)(mq, value=mv)
    b = keras.layers.MultiHeadAttention(num_heads=2, key_dim=2)(a, a, a, use_causal_mask=True)
    c = keras.layers.Attention(use_scale=True)([b, mq], use_causal_mask=True)
    d = keras.layers.EinsumDense("abc,cd->abd", output_shape=(None, 2), bias_axes="d")(c)
    km = keras.Model([q, v], [c, d])
    ours = Model.from_config(json.loads(km.to_json()), seed=0)
    ours.set_weights(km.get_weights())
    rng = np.random.default_rng(11)
    x = rng.normal(size=(3, 5, 4)).astype(np.float32)
    y = rng.normal(size=(3, 6, 3)).astype(np.float32)
    x[0, 3:], y[1, 4:] = 0.0, 0.0
    want = km([torch.as_tensor(x), torch.as_tensor(y)])
    with torch.no_grad():
        got, masks = ours.forward_with_mask([torch.as_tensor(x), torch.as_tensor(y)])
    for g, w in zip(got, want, strict=True):
        _gap(g, w)
    assert torch.equal(masks[0], want[0]._keras_mask)
    assert masks[1] is None  # EinsumDense does not support masking: Keras drops the mask
    assert [r["output_shape"] for r in ours.summary()["layers"]][-1] == [None, None, 2]
