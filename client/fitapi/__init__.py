"""fitapi's Python client: Keras-shaped fit, evaluate and predict against a fitapi server."""

__version__ = "0.1.0"
