"""Embedding: inputs are integer ids in [0, input_dim), given as float32 (the third element)."""

from __future__ import annotations

from typing import Any

CASES: dict[str, tuple[Any, ...]] = {
    "Embedding": ([("Embedding", {"input_dim": 10, "output_dim": 4})], [None, 5], "int:10"),
    "Embedding_then_dense": ([("Embedding", {"input_dim": 7, "output_dim": 3,
                                             "embeddings_initializer": "glorot_uniform"}),
                              ("Flatten", {}), ("Dense", {"units": 2})], [None, 4], "int:7"),
    "Embedding_3d": ([("Embedding", {"input_dim": 5, "output_dim": 2})], [None, 2, 3], "int:5"),
}  # fmt: skip
