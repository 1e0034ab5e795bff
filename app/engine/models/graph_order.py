"""The order of a Functional graph's calls: the order they run in, and the order Keras lists
its operations (the order of `model.layers`, of `get_weights()` and of a `.keras` file's weight
groups).

A call reads the tensors of its arguments and, where it has one, of its `mask` argument; both
count as edges here, as they do in Keras's graph.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.engine.config.errors import ConfigError, Loc
from app.engine.layers.base import Layer

Key = tuple[str, int]  # (layer name, node index): one tensor of the graph
Refs = Key | list[Key | None]


@dataclass
class RawNode:
    """One call as the config writes it: the tensors it reads, by key, before any is built."""

    layer: Layer
    index: int
    inputs: Refs
    options: dict[str, Any]
    loc: Loc
    mask: Refs | None = None  # the call's own `mask` argument
    key: Key = field(init=False)

    def __post_init__(self) -> None:
        self.key = (self.layer.name, self.index)

    def reads(self) -> list[Key]:
        """Every tensor the call reads: its arguments, then its mask."""
        refs: list[Key | None] = []
        for value in (self.inputs, self.mask):
            refs += value if isinstance(value, list) else [value]
        return [k for k in refs if k is not None]


def run_order(raw: list[RawNode], available: set[Key]) -> list[RawNode]:
    """The nodes in an order where each comes after the nodes it reads (config order kept
    where free); a tensor that no node produces, or a cycle, is a ConfigError."""
    produced = {n.key: n for n in raw}
    waiting: dict[Key, list[RawNode]] = {}
    missing: dict[int, int] = {}
    ready: list[RawNode] = []
    for node in raw:
        deps = {k for k in node.reads() if k not in available}
        for k in deps:
            if k not in produced:
                raise ConfigError(node.loc, f"reads tensor {[*k, 0]}, which no layer produces")
            waiting.setdefault(k, []).append(node)
        missing[id(node)] = len(deps)
        if not deps:
            ready.append(node)
    ordered: list[RawNode] = []
    while ready:
        node = ready.pop(0)
        ordered.append(node)
        for follower in waiting.get(node.key, []):
            missing[id(follower)] -= 1
            if missing[id(follower)] == 0:
                ready.append(follower)
    if len(ordered) != len(raw):
        stuck = next(n for n in raw if missing[id(n)] > 0)
        raise ConfigError(stuck.loc, "the graph has a cycle through this call")
    return ordered


def keras_order(raw: list[RawNode], outputs: list[Key]) -> list[Layer]:
    """The layers and op nodes in the order Keras's Functional model lists its operations (its
    `map_graph`): by depth from the outputs, deepest first, ties broken by when a depth-first
    walk from the outputs first reaches the operation. Keras writes its configs in this order;
    a hand-written config in another order still gets Keras's."""
    by_key = {n.key: n for n in raw}
    first_seen: dict[str, int] = {}
    post_order: list[Key] = []
    done: set[Key] = set()

    def walk(key: Key) -> None:  # iterative post-order DFS (graphs may be deep)
        stack: list[tuple[Key, bool]] = [(key, False)]
        while stack:
            current, expanded = stack.pop()
            if current in done:
                continue
            node = by_key.get(current)
            if expanded or node is None:
                first_seen.setdefault(current[0], len(first_seen))
                done.add(current)
                post_order.append(current)
                continue
            first_seen.setdefault(current[0], len(first_seen))
            stack.append((current, True))
            stack.extend((p, False) for p in reversed(node.reads()) if p not in done)

    for key in outputs:
        walk(key)
    node_depth: dict[Key, int] = {}
    layer_depth: dict[str, int] = {}
    for key in reversed(post_order):
        depth = max(node_depth.setdefault(key, 0), layer_depth.get(key[0], 0))
        layer_depth[key[0]] = depth
        node_depth[key] = depth
        node = by_key.get(key)
        for parent in node.reads() if node is not None else []:
            node_depth[parent] = max(depth + 1, node_depth.get(parent, 0))
    layers = {n.layer.name: n.layer for n in raw}
    known = [name for name in layers if name in layer_depth]
    ordered = sorted(known, key=lambda name: (-layer_depth[name], first_seen[name]))
    unused = [name for name in layers if name not in layer_depth]  # not on a path to an output
    return [layers[name] for name in [*ordered, *unused]]
