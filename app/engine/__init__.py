"""The training engine: Keras-style models, compile, fit, evaluate and predict on PyTorch.

A pure library: it imports torch, numpy, pydantic and the standard library only, never the web,
database or queue layers of the service.
"""
