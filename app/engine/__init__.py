"""The training engine: Keras-style models, compile, fit, evaluate and predict on PyTorch.

A pure library: it imports torch, numpy, pydantic and the standard library only, never the web,
database or queue layers of the service.

One package per family, each depending only on those below it (an import-linter contract keeps
the order, and a test keeps app/ free of import circles):

- `training`: compile, the trainer and its loop, fit arguments, resumable state, checkpoints.
- `callbacks`: Keras's callbacks and their registry.
- `models`: the Model runtime, reading and writing Keras model JSON, Functional graphs.
- `layers`: the LAYERS registry and every layer (and the activations).
- `metrics`, `optimizers` (with the learning-rate schedules): each family's registry and `get`.
- `losses`: the LOSSES registry, `get`, the Loss base and Keras's reduction rules.
- `weights` (initializers, regularizers, constraints) and `arrays` (user arrays checked, input
  dtypes, batches from disk).
- `config` (errors, registries, typed config readers) and `scalars`.
"""
