"""Keras layers implemented on torch. Importing this package imports every module in it, which
fills the LAYERS registry (a closed registry: only the modules shipped here)."""

import importlib
import pkgutil

from app.engine.layers.base import LAYERS, Layer, Shape

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["LAYERS", "Layer", "Shape"]
