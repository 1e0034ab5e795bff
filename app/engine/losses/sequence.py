"""Keras 3's CTC loss: zero-padded integer label sequences (N, L) against per-step logits
(N, T, C).

Class 0 is both CTC's blank and the padding of `y_true`; each row's label length is its count of
non-zero entries and every row uses all T steps. The logits go through log_softmax over the class
axis and `torch.nn.functional.ctc_loss` with the arguments Keras's torch backend gives it, so the
values match Keras's.

The label checks refuse what Keras would score silently but wrongly or as infinity: a zero before
the end of a row (Keras's length count would then cut off real labels and score the zero as a
label), and a row that needs more steps than T (its label count plus one blank between each pair
of equal neighbours).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from app.engine.config.errors import DataError, Loc
from app.engine.losses.base import LOSSES, Loss
from app.engine.losses.reduction import Shape, misfit

Tensor = torch.Tensor

_BLANK = 0
_EXPECTED = "integer label sequences (N, L), zero-padded, against logits (N, T, C)"


@LOSSES.add("ctc")
class CTC(Loss):
    """The negative log-likelihood of each row's labels under CTC, from logits."""

    default_name = "ctc"

    def fn(self, y_true: Tensor, y_pred: Tensor) -> Tensor:
        if y_true.dim() != 2 or y_pred.dim() != 3 or y_true.shape[0] != y_pred.shape[0]:
            raise misfit(tuple(y_true.shape), tuple(y_pred.shape), (), _EXPECTED)
        batch, steps = y_pred.shape[0], y_pred.shape[1]
        input_lengths = torch.full((batch,), steps, dtype=torch.int32, device=y_pred.device)
        label_lengths = torch.sum(y_true != _BLANK, dim=-1).to(torch.int32)
        # Time-major for torch's ctc_loss; log_softmax on that layout, as Keras takes it.
        log_probs = F.log_softmax(torch.transpose(y_pred, 1, 0), dim=-1)
        return F.ctc_loss(
            log_probs,
            y_true.to(torch.long),
            input_lengths,
            label_lengths,
            blank=_BLANK,
            reduction="none",
        )

    def _check(self, y: np.ndarray, out_shape: Shape, loc: Loc) -> None:
        if y.ndim != 2 or len(out_shape) != 3:
            raise misfit(y.shape, out_shape, loc, _EXPECTED)
        steps, classes = out_shape[1], out_shape[2]
        if classes is not None and classes < 2:
            raise DataError(
                loc,
                f"CTC needs at least 2 classes (0 is the blank), received outputs with {classes}",
            )
        if not y.size:
            return
        if np.issubdtype(y.dtype, np.floating) and (y != np.floor(y)).any():
            raise DataError(loc, "CTC labels must be integer class ids, received fractions")
        top = f"{classes}" if classes is not None else "C"
        if y.min() < 0 or (classes is not None and y.max() >= classes):
            raise DataError(
                loc,
                f"CTC labels must be class ids in [0, {top}) with 0 as padding, received values "
                f"from {y.min()} to {y.max()}",
            )
        present = y != _BLANK
        # A row is well formed when its labels come first and its zeros only after them.
        gaps = present[:, 1:] & ~present[:, :-1]
        if gaps.any():
            row = int(np.argmax(gaps.any(axis=1)))
            raise DataError(
                loc,
                "CTC labels must come first in each row, then zero padding (0 is the blank); "
                f"received a zero before a label in row {row}",
            )
        if steps is None:
            return
        repeats = np.sum(present[:, 1:] & (y[:, 1:] == y[:, :-1]), axis=1)
        needed = np.sum(present, axis=1) + repeats
        if needed.max() > steps:
            row = int(np.argmax(needed))
            raise DataError(
                loc,
                "CTC needs a time step per label plus one between equal neighbours; row "
                f"{row} of the labels needs {int(needed[row])}, received outputs with {steps}",
            )
