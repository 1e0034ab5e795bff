"""Models built from Keras model JSON: the Model runtime (`model`), reading model JSON
(`from_json`), Functional graphs (`functional`, `graph_order`, `op_nodes`, `numpy_ops`), writing
model JSON back (`to_json`), cost estimates (`cost`) and Sequential or Functional models used as
layers of another model (`nested`, registered in LAYERS when this package is imported)."""

from app.engine.models import nested

__all__ = ["nested"]
