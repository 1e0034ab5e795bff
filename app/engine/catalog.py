"""What the engine supports, read from its registries: the list in app/engine/README.md is generated
from this (`python -m app.engine.catalog`), and a test keeps the two equal."""

from __future__ import annotations

from app.engine.callbacks import CALLBACKS
from app.engine.config.registry import Registry
from app.engine.layers import LAYERS
from app.engine.layers.activations import ACTIVATIONS
from app.engine.losses import LOSSES
from app.engine.metrics import METRICS
from app.engine.models import nested  # noqa: F401  (registers Sequential/Functional as layers)
from app.engine.optimizers import OPTIMIZERS
from app.engine.optimizers.schedules import SCHEDULES
from app.engine.weights.constraints import CONSTRAINTS
from app.engine.weights.initializers import initializer_names
from app.engine.weights.regularizers import REGULARIZERS

START = "<!-- catalog:start -->"
END = "<!-- catalog:end -->"


def _entries(registry: Registry[object]) -> str:
    parts = []
    for cls in sorted(registry.classes(), key=registry.canonical_name):
        name = registry.canonical_name(cls)
        aliases = sorted(
            n
            for n in registry.all_names()
            if n != name
            and registry.lookup(n, ()) is cls
            and not (registry.case_insensitive and n.lower() == name.lower())
        )
        parts.append(
            f"`{name}`" + (f" ({', '.join(f'`{a}`' for a in aliases)})" if aliases else "")
        )
    return ", ".join(parts)


def markdown() -> str:
    rows = [
        ("Layers", _entries(LAYERS)),  # type: ignore[arg-type]
        ("Activations", ", ".join(f"`{n}`" for n in sorted(ACTIVATIONS))),
        (
            "Initializers (and their snake_case names)",
            ", ".join(f"`{n}`" for n in initializer_names()),
        ),
        ("Regularizers (aliases)", _entries(REGULARIZERS)),  # type: ignore[arg-type]
        ("Constraints (aliases)", _entries(CONSTRAINTS)),  # type: ignore[arg-type]
        ("Optimizers (any case)", _entries(OPTIMIZERS)),  # type: ignore[arg-type]
        ("Learning-rate schedules", _entries(SCHEDULES)),  # type: ignore[arg-type]
        ("Losses (aliases)", _entries(LOSSES)),  # type: ignore[arg-type]
        ("Metrics (aliases)", _entries(METRICS)),  # type: ignore[arg-type]
        ("Callbacks", _entries(CALLBACKS)),  # type: ignore[arg-type]
    ]
    body = "\n".join(f"- {title}: {text}." for title, text in rows)
    return f"{START}\n{body}\n{END}"


if __name__ == "__main__":
    print(markdown())
