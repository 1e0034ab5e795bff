"""Per-weight options of layers, each family with its registry: initializers, regularizers and
constraints (and what regularizers and constraints share, in `options`)."""
