"""Callbacks: hooks into fit. Importing this package fills the CALLBACKS registry."""

from app.engine.callbacks import monitor
from app.engine.callbacks.base import Callback, CallbackList, History, LazyLogs, Logs
from app.engine.callbacks.monitor import EarlyStopping, ThresholdStopping
from app.engine.callbacks.registry import CALLBACKS, get

__all__ = [
    "CALLBACKS", "Callback", "CallbackList", "EarlyStopping", "History", "LazyLogs", "Logs",
    "ThresholdStopping", "get", "monitor",
]  # fmt: skip
