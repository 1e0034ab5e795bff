"""fitapi.History: what Keras's `fit` returns, `.history`, `.epoch` and `.params`."""

from __future__ import annotations

from typing import Any


class History:
    """`history`: metric name -> one value per epoch (None where the server logged a
    non-finite value); `epoch`: the epoch indices, from `initial_epoch`; `params`: verbose,
    epochs and steps, as Keras's History has them."""

    def __init__(
        self,
        history: dict[str, list[float | None]],
        epoch: list[int],
        params: dict[str, Any] | None = None,
    ) -> None:
        self.history = history
        self.epoch = epoch
        self.params = params or {}

    def __repr__(self) -> str:
        return f"<fitapi.History epochs={len(self.epoch)} keys={sorted(self.history)}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, History):
            return NotImplemented
        return self.history == other.history and self.epoch == other.epoch
