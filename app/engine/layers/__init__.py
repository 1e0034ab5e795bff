"""Keras layers implemented on torch. Importing this package fills the LAYERS registry."""

from app.engine.layers import core, normalization
from app.engine.layers.base import LAYERS, Layer, Shape

__all__ = ["LAYERS", "Layer", "Shape", "core", "normalization"]
