"""What Keras's SimpleRNN, LSTM and GRU share: their config, their weights' creation, dropout
masks, and the time loop with Keras's mask semantics (`backend/torch/rnn.py`).

The loop follows Keras's torch backend step by step: with a mask, a masked step keeps the
previous state and outputs the previous output (zeros when `zero_output_for_mask`, which
Bidirectional forces on with `return_sequences`); `go_backwards` walks the reversed sequence and
returns its outputs in that reversed order; the output mask is the input mask, passed on only
with `return_sequences` (and not reversed, as Keras does not reverse it either). `unroll` changes
nothing numerically and is accepted.

Input projections (`x @ kernel` for every step) are made in one matmul before the loop, as Keras's
own fast path does; a subclass says how each step combines them with the recurrent state.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from app.engine.config.errors import ConfigError, Loc
from app.engine.layers import activations, keys
from app.engine.layers.base import Layer, Shape
from app.engine.weights import initializers

Tensor = torch.Tensor
State = tuple[Tensor, ...]

MAX_UNITS = 1 << 20


class Recurrent(Layer):
    """A Keras recurrent layer over `(batch, timesteps, features)` inputs.

    It declares the keys Keras's RNN writes first, then units and activation; each layer
    declares the rest in its own order (Keras keeps use_bias, the initializers, regularizers,
    constraints and dropout rates in the cell, and the layers write them in different orders).
    Keras keeps the weights (and their options) in the cell too; here they are the layer's own,
    so the base class's regularizers and constraints apply to them directly."""

    supports_masking = True
    uses_mask = True
    integer_input = "cast"  # Keras's kernels promote the step's matmul to float32
    #: How many blocks of `units` columns the kernels have (gates in Keras's order).
    gates: ClassVar[int]
    #: How many state tensors the recurrence carries (LSTM: h and c).
    n_states: ClassVar[int] = 1
    return_sequences = keys.boolean(False)
    return_state = keys.must_be_false(
        "is not supported: it makes the layer return its states as extra outputs, and a layer "
        "in a Sequential model has exactly one output; use return_sequences for the per-step "
        "outputs"
    )
    go_backwards = keys.boolean(False)
    stateful = keys.must_be_false(
        "is not supported: a stateful RNN carries its state from one batch to the next"
    )
    unroll = keys.boolean(False)
    zero_output_for_mask = keys.boolean(False)
    units = keys.integer(min_value=1, max_value=MAX_UNITS)
    activation = keys.activation("tanh")
    # Declared by each layer, where Keras's config order puts them:
    use_bias: bool
    kernel_initializer: dict[str, Any]
    recurrent_initializer: dict[str, Any]
    bias_initializer: dict[str, Any]
    dropout: float
    recurrent_dropout: float
    kernel: Tensor
    recurrent_kernel: Tensor
    bias: Tensor

    def __post_init__(self) -> None:
        self.activation_fn = activations.get(self.activation, ())[1]
        self.generator: torch.Generator | None = None

    # -- weights -------------------------------------------------------------------------------
    def build(self, input_shape: Shape, generator: torch.Generator, loc: Loc) -> Shape:
        if len(input_shape) != 3:
            raise ConfigError(
                loc,
                f"{self.class_name} takes inputs of shape (batch, timesteps, features), "
                f"got {input_shape}",
            )
        batch, steps, features = input_shape
        if features is None:
            raise ConfigError(
                loc, f"{self.class_name} needs a known feature size, got {input_shape}"
            )
        if self.unroll and steps is None:
            raise ConfigError((*loc, "unroll"), "needs a known number of timesteps")
        width = self.gates * self.units
        kernel = keys.draw(self, "kernel_initializer", loc)((features, width), generator)
        self.add_weight("kernel", kernel)
        recurrent = keys.draw(self, "recurrent_initializer", loc)((self.units, width), generator)
        self.add_weight("recurrent_kernel", recurrent)
        if self.use_bias:
            init = keys.draw(self, "bias_initializer", loc)
            self.add_weight("bias", self.initial_bias(init, generator))
        return (batch, steps, self.units) if self.return_sequences else (batch, self.units)

    def h5_paths(self) -> list[str]:
        # Keras keeps a recurrent layer's weights in its cell.
        return [f"cell/{p}" for p in super().h5_paths()]

    def initial_bias(self, init: initializers.Init, generator: torch.Generator) -> Tensor:
        """The bias drawn with the bias initializer's `init`."""
        return init((self.gates * self.units,), generator)

    def integer_input_rule(self) -> str | None:
        # Keras's input dropout cannot multiply an integer tensor: its fit fails there.
        return None if self.dropout else self.integer_input

    def compute_mask(self, x: Any, mask: Any) -> Tensor | None:
        return mask if self.return_sequences else None

    # -- what a subclass supplies --------------------------------------------------------------
    def per_gate_dropout(self) -> bool:
        """Keras's `implementation=1` (forced by recurrent dropout): one dropout mask per gate."""
        return False

    def fused(self, mask: Tensor | None) -> bool:
        """Whether Keras takes its backend's fused path (`backend.lstm`/`backend.gru`), whose
        sums are grouped differently from the cell's."""
        return False

    def project(self, seq: Tensor, drop: list[Tensor] | None, fused: bool) -> Tensor:
        """Input terms of every step, `(steps, batch, gates * units)`, from `seq`
        `(steps, batch, features)` and the input dropout masks."""
        raise NotImplementedError

    def step(
        self, xt: Tensor, state: State, rec: list[Tensor] | None, fused: bool
    ) -> tuple[Tensor, State]:
        """One step: (output, new state) from the step's input terms and the previous state."""
        raise NotImplementedError

    def run_fast(self, x: Tensor, drop: list[Tensor] | None) -> Tensor | None:
        """A fused kernel for the whole sequence where Keras uses one (cuDNN on CUDA), else
        None."""
        return None

    # -- the loop ------------------------------------------------------------------------------
    def _masks(self, shape: tuple[int, int], x: Tensor, rate: float) -> list[Tensor]:
        keep = 1.0 - rate
        count = self.gates if self.per_gate_dropout() else 1
        return [
            torch.empty(shape, dtype=x.dtype, device=x.device).bernoulli_(
                keep, generator=self.generator
            )
            / keep
            for _ in range(count)
        ]

    def forward(
        self, x: torch.Tensor, training: bool = False, mask: Tensor | None = None
    ) -> torch.Tensor:
        batch = x.shape[0]
        # Keras draws the input masks, then the recurrent ones, once per call: every step of a
        # batch uses the same masks.
        drop = (
            self._masks((batch, x.shape[2]), x, self.dropout) if training and self.dropout else None
        )
        rec = (
            self._masks((batch, self.units), x, self.recurrent_dropout)
            if training and self.recurrent_dropout
            else None
        )
        fused = self.fused(mask)
        if fused:
            out = self.run_fast(x, drop)
            if out is not None:
                return out
        if self.go_backwards:
            x = torch.flip(x, [1])
            mask = None if mask is None else torch.flip(mask, [1])
        xs = self.project(x.transpose(0, 1), drop, fused)
        zeros = torch.zeros((batch, self.units), dtype=x.dtype, device=x.device)
        state: State = (zeros,) * self.n_states
        steps = mask.to(torch.bool).transpose(0, 1).unsqueeze(-1) if mask is not None else None
        outputs: list[Tensor] = []
        out = prev = zeros
        for t in range(xs.shape[0]):
            out, new_state = self.step(xs[t], state, rec, fused)
            if steps is not None:
                keep = steps[t]
                out = torch.where(keep, out, zeros if self.zero_output_for_mask else prev)
                new_state = tuple(
                    torch.where(keep, s, p) for s, p in zip(new_state, state, strict=True)
                )
                prev = out
            state = new_state
            if self.return_sequences:
                outputs.append(out)
        return torch.stack(outputs, dim=1) if self.return_sequences else out
