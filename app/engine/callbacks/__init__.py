"""Callbacks: hooks into fit. Importing this package fills the CALLBACKS registry."""

from app.engine.callbacks import monitor
from app.engine.callbacks.base import Callback, CallbackList, History, LazyLogs, Logs
from app.engine.callbacks.checkpoint import ModelCheckpoint
from app.engine.callbacks.monitor import EarlyStopping, ThresholdStopping
from app.engine.callbacks.plateau import ReduceLROnPlateau
from app.engine.callbacks.progress import ProgressReporter
from app.engine.callbacks.registry import CALLBACKS, get
from app.engine.callbacks.schedule import LearningRateScheduler
from app.engine.callbacks.terminate import NonFiniteLoss, TerminateOnNaN

__all__ = [
    "CALLBACKS",
    "Callback",
    "CallbackList",
    "EarlyStopping",
    "History",
    "LazyLogs",
    "LearningRateScheduler",
    "Logs",
    "ModelCheckpoint",
    "NonFiniteLoss",
    "ProgressReporter",
    "ReduceLROnPlateau",
    "TerminateOnNaN",
    "ThresholdStopping",
    "get",
    "monitor",
]
