"""Hand-written model configs made loadable by `keras.models.model_from_json` (which needs the
`module` fields that `model.to_json()` writes and hand-written configs may omit)."""

from __future__ import annotations

import copy
import json
from typing import Any


def keras_json(config: dict[str, Any]) -> str:
    out = copy.deepcopy(config)
    out.setdefault("module", "keras")
    out["config"].setdefault("name", "sequential")
    for layer in out["config"]["layers"]:
        layer.setdefault("module", "keras.layers")
    return json.dumps(out)
