"""fitapi's Python client: Keras-shaped fit, evaluate and predict against a fitapi server.
`fitapi.Client(url, api_key)`, then `client.models.create(keras_model)`, `model.compile(...)`
and `model.fit(x, y, ...)` as in Keras (see the README, "The Python client")."""

from fitapi import callbacks, progress
from fitapi.client import Client
from fitapi.datasets import Dataset
from fitapi.errors import (
    ApiError,
    Conflict,
    EventStreamError,
    FitapiError,
    InvalidRequest,
    JobCancelled,
    JobFailed,
    NotFound,
    RateLimited,
    ServerError,
    Unauthorized,
)
from fitapi.history import History
from fitapi.jobs import Event, Job
from fitapi.models import Model

__version__ = "0.1.0"
__all__ = [
    "ApiError", "Client", "Conflict", "Dataset", "Event", "EventStreamError", "FitapiError",
    "History", "InvalidRequest", "Job", "JobCancelled", "JobFailed", "Model", "NotFound",
    "RateLimited", "ServerError", "Unauthorized", "callbacks", "progress",
]  # fmt: skip
