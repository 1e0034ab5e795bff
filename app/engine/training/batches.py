"""Which samples each training batch holds, epoch after epoch: Keras's epoch iterator for
array data.

A pass over the data is ceil(N / batch_size) batches, the last one partial. `shuffle=True`
draws a new permutation for each pass, `"batch"` keeps the batches contiguous and in order but
permutes the samples within each batch (drawn per batch), `False` keeps everything in order.

Without `steps_per_epoch` every epoch is one pass. With it, the pass carries over from one
epoch to the next: an epoch takes up to `steps_per_epoch` batches from where the last one
stopped, ends early when the pass runs out, and the next epoch starts a new pass. The position
(and the current pass's permutation) is part of a checkpoint, so a resumed fit draws the
batches an uninterrupted one would.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch


class BatchIterator:
    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        shuffle: bool | str,
        steps_per_epoch: int | None,
        generator: torch.Generator,
        device: torch.device,
    ) -> None:
        self.n, self.batch_size = n, batch_size
        self.shuffle = shuffle
        self.steps_per_epoch = steps_per_epoch
        self.generator, self.device = generator, device
        self.num_batches = math.ceil(n / batch_size)
        self.seen = 0  # batches taken from the current pass
        self.order: torch.Tensor | None = None  # the current pass's permutation (shuffle=True)
        self.in_pass = False

    @property
    def steps(self) -> int:
        """Batches per epoch as Keras reports them (History.params["steps"])."""
        return self.steps_per_epoch or self.num_batches

    def _new_pass(self) -> None:
        self.seen = 0
        self.in_pass = True
        self.order = (
            torch.randperm(self.n, generator=self.generator, device=self.device)
            if self.shuffle is True
            else None
        )

    def epoch(self) -> Iterator[torch.Tensor | slice]:
        """Each batch's sample indices for one epoch (a slice where they are contiguous)."""
        if not self.in_pass or self.steps_per_epoch is None:
            self._new_pass()
        for _ in range(self.steps):
            if self.seen >= self.num_batches:
                break  # the pass ran out: this epoch ends early (Keras warns here)
            lo = self.seen * self.batch_size
            hi = min(lo + self.batch_size, self.n)
            self.seen += 1
            yield self._indices(lo, hi)
        if self.seen >= self.num_batches:
            self.in_pass = False

    def peek(self) -> torch.Tensor | slice | None:
        """The indices the current epoch's next batch will have, when they are known without
        drawing from the generator (None at a pass's end, and with shuffle="batch", whose
        batches draw their order as they come)."""
        if not self.in_pass or self.seen >= self.num_batches or self.shuffle == "batch":
            return None
        lo = self.seen * self.batch_size
        return self._indices(lo, min(lo + self.batch_size, self.n))

    def _indices(self, lo: int, hi: int) -> torch.Tensor | slice:
        if self.order is not None:
            return self.order[lo:hi]
        if self.shuffle == "batch":
            perm = torch.randperm(hi - lo, generator=self.generator, device=self.device)
            return perm + lo
        return slice(lo, hi)

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors = {} if self.order is None else {"data/order": self.order.detach().cpu()}
        return tensors, {
            "in_pass": self.in_pass,
            "seen": self.seen,
            "n": self.n,
            "batch_size": self.batch_size,
        }

    def load_state(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        """Continue a pass a checkpoint stopped in; ignored if the data or batch size differ."""
        if meta.get("n") != self.n or meta.get("batch_size") != self.batch_size:
            return
        self.in_pass = bool(meta.get("in_pass")) and self.steps_per_epoch is not None
        self.seen = int(meta.get("seen", 0))
        order = tensors.get("data/order")
        self.order = None if order is None else order.to(self.device)
        if self.shuffle is True and self.order is None:
            self.in_pass = False
