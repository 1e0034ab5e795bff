"""Keras's SimpleRNN, LSTM and GRU, step for step as Keras's torch backend computes them.

Gate order and weight layout are Keras's: LSTM kernels are `[i | f | c | o]` blocks of `units`
columns, GRU kernels `[z | r | h]`; a GRU with `reset_after` has a `(2, 3 * units)` bias (input
row, recurrent row). Where Keras groups a sum differently in its two LSTM code paths (the
backend's fused loop adds the bias to the input projection, the cell adds it last), the same
path is taken here under the same conditions: no mask, no recurrent dropout, `use_cudnn` not
false. Recurrent dropout makes Keras use one dropout mask per gate (its `implementation=1`),
and so does this. On CUDA, where Keras hands eligible LSTMs and GRUs (tanh, sigmoid, a bias,
not unrolled) to cuDNN through torch's fused kernels, so does this, with the same weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from app.engine.config.errors import ConfigError, Loc
from app.engine.config.readers import get_int
from app.engine.layers import activations, keys
from app.engine.layers.base import LAYERS
from app.engine.layers.recurrent_base import Recurrent, State, Tensor
from app.engine.weights import initializers


def _blocks(w: Tensor, n: int, units: int) -> list[Tensor]:
    return [w[..., g * units : (g + 1) * units] for g in range(n)]


def _masked_matmul(x: Tensor, masks: list[Tensor], w: Tensor, units: int) -> Tensor:
    """Keras's per-gate products `(x * mask_g) @ w_g`, side by side."""
    return torch.cat(
        [(x * m) @ wg for m, wg in zip(masks, _blocks(w, len(masks), units), strict=True)], -1
    )


def _read_use_cudnn(config: Mapping[str, Any], key: str, loc: Loc, default: Any) -> Any:
    use_cudnn = config.get(key, default)
    if use_cudnn not in ("auto", True, False):
        raise ConfigError((*loc, key), f"must be 'auto', true or false, got {use_cudnn!r}")
    return use_cudnn


def _read_implementation(config: Mapping[str, Any], key: str, loc: Loc, default: int) -> int:
    if get_int(config, key, loc, default, min_value=1, max_value=2) != 2:
        raise ConfigError((*loc, key), "only 2 (Keras's default) is supported")
    return 2


class _Gated(Recurrent):
    """LSTM and GRU: a recurrent activation, `use_cudnn`, and Keras's per-gate dropout."""

    recurrent_activation = keys.activation("sigmoid")
    use_cudnn = keys.Key[Any](_read_use_cudnn, "auto", saved=False)
    implementation = keys.Key[int](_read_implementation, 2, saved=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.recurrent_activation_fn = activations.get(self.recurrent_activation, ())[1]

    @classmethod
    def _validate(cls, values: dict[str, Any], loc: Loc) -> None:
        if values["use_cudnn"] is True and values["recurrent_dropout"]:
            raise ConfigError(
                (*loc, "use_cudnn"), "cannot be true with recurrent_dropout (Keras refuses it too)"
            )

    def per_gate_dropout(self) -> bool:
        return self.recurrent_dropout > 0

    def fused(self, mask: Tensor | None) -> bool:
        return mask is None and self.use_cudnn is not False and not self.recurrent_dropout

    def cudnn_ok(self, x: Tensor) -> bool:
        return (
            x.is_cuda
            and self.activation == "tanh"
            and self.recurrent_activation == "sigmoid"
            and self.use_bias
            and not self.unroll
        )

    def fast_input(self, x: Tensor, drop: list[Tensor] | None) -> Tensor:
        """The whole sequence as Keras's fused path takes it: dropped out, then reversed."""
        if drop is not None:
            x = x * drop[0].unsqueeze(1)
        return torch.flip(x, [1]) if self.go_backwards else x


@LAYERS.add()
class SimpleRNN(Recurrent):
    gates = 1
    use_bias = keys.boolean(True)
    kernel_initializer = keys.initializer("glorot_uniform", null=True, empty=True)
    recurrent_initializer = keys.initializer("orthogonal", null=True, empty=True)
    bias_initializer = keys.initializer("zeros", null=True, empty=True)
    kernel_regularizer = keys.regularizer("kernel")
    recurrent_regularizer = keys.regularizer("recurrent_kernel")
    bias_regularizer = keys.regularizer("bias")
    activity_regularizer = keys.activity_regularizer()
    kernel_constraint = keys.constraint("kernel")
    recurrent_constraint = keys.constraint("recurrent_kernel")
    bias_constraint = keys.constraint("bias")
    dropout = keys.rate(0.0)
    recurrent_dropout = keys.rate(0.0)
    seed = keys.integer_or_none(saved=False)  # Keras's SimpleRNN leaves it out of its config

    def project(self, seq: Tensor, drop: list[Tensor] | None, fused: bool) -> Tensor:
        y = (seq if drop is None else seq * drop[0]) @ self.kernel
        return y + self.bias if self.use_bias else y

    def step(
        self, xt: Tensor, state: State, rec: list[Tensor] | None, fused: bool
    ) -> tuple[Tensor, State]:
        h = state[0] if rec is None else state[0] * rec[0]
        out = self.activation_fn(xt + h @ self.recurrent_kernel)
        return out, (out,)


@LAYERS.add()
class LSTM(_Gated):
    gates = 4
    n_states = 2
    use_bias = keys.boolean(True)
    kernel_initializer = keys.initializer("glorot_uniform", null=True, empty=True)
    recurrent_initializer = keys.initializer("orthogonal", null=True, empty=True)
    bias_initializer = keys.initializer("zeros", null=True, empty=True)
    unit_forget_bias = keys.boolean(True)
    kernel_regularizer = keys.regularizer("kernel")
    recurrent_regularizer = keys.regularizer("recurrent_kernel")
    bias_regularizer = keys.regularizer("bias")
    activity_regularizer = keys.activity_regularizer()
    kernel_constraint = keys.constraint("kernel")
    recurrent_constraint = keys.constraint("recurrent_kernel")
    bias_constraint = keys.constraint("bias")
    dropout = keys.rate(0.0)
    recurrent_dropout = keys.rate(0.0)
    seed = keys.integer_or_none()

    def initial_bias(self, init: initializers.Init, generator: torch.Generator) -> Tensor:
        if not self.unit_forget_bias:
            return super().initial_bias(init, generator)
        u = self.units
        return torch.cat([init((u,), generator), torch.ones(u), init((2 * u,), generator)])

    def project(self, seq: Tensor, drop: list[Tensor] | None, fused: bool) -> Tensor:
        if drop is not None and len(drop) > 1:
            y = _masked_matmul(seq, drop, self.kernel, self.units)
        else:
            y = (seq if drop is None else seq * drop[0]) @ self.kernel
        # The fused loop and the per-gate cell add the bias to the input terms; the default cell
        # adds it after the recurrent product (see step).
        if self.use_bias and (fused or self.per_gate_dropout()):
            y = y + self.bias
        return y

    def step(
        self, xt: Tensor, state: State, rec: list[Tensor] | None, fused: bool
    ) -> tuple[Tensor, State]:
        h, c = state
        if rec is None:
            z = xt + h @ self.recurrent_kernel
        else:
            z = xt + _masked_matmul(h, rec, self.recurrent_kernel, self.units)
        if self.use_bias and not (fused or self.per_gate_dropout()):
            z = z + self.bias
        z_i, z_f, z_c, z_o = torch.chunk(z, 4, dim=1)
        sigma = self.recurrent_activation_fn
        c = sigma(z_f) * c + sigma(z_i) * self.activation_fn(z_c)
        h = sigma(z_o) * self.activation_fn(c)
        return h, (h, c)

    def run_fast(self, x: Tensor, drop: list[Tensor] | None) -> Tensor | None:
        return self.cudnn(x, drop) if self.cudnn_ok(x) else None

    def cudnn(self, x: Tensor, drop: list[Tensor] | None) -> Tensor:
        """torch's fused LSTM with Keras's weights (the same gate order; the bias goes in as
        the input bias)."""
        seq = self.fast_input(x, drop)
        zeros = torch.zeros((1, x.shape[0], self.units), dtype=x.dtype, device=x.device)
        params = [
            self.kernel.T.contiguous(),
            self.recurrent_kernel.T.contiguous(),
            self.bias,
            torch.zeros_like(self.bias),
        ]
        out, _, _ = torch.lstm(
            seq, (zeros, zeros), params, True, 1, 0.0, torch.is_grad_enabled(), False, True
        )
        return out if self.return_sequences else out[:, -1]


@LAYERS.add()
class GRU(_Gated):
    gates = 3
    use_bias = keys.boolean(True)
    kernel_initializer = keys.initializer("glorot_uniform", null=True, empty=True)
    recurrent_initializer = keys.initializer("orthogonal", null=True, empty=True)
    bias_initializer = keys.initializer("zeros", null=True, empty=True)
    kernel_regularizer = keys.regularizer("kernel")
    recurrent_regularizer = keys.regularizer("recurrent_kernel")
    bias_regularizer = keys.regularizer("bias")
    activity_regularizer = keys.activity_regularizer()
    kernel_constraint = keys.constraint("kernel")
    recurrent_constraint = keys.constraint("recurrent_kernel")
    bias_constraint = keys.constraint("bias")
    dropout = keys.rate(0.0)
    recurrent_dropout = keys.rate(0.0)
    reset_after = keys.boolean(True)
    seed = keys.integer_or_none()

    @classmethod
    def _validate(cls, values: dict[str, Any], loc: Loc) -> None:
        super()._validate(values, loc)
        if values["use_cudnn"] is True and not values["reset_after"]:
            raise ConfigError(
                (*loc, "use_cudnn"), "cannot be true with reset_after false (Keras refuses it too)"
            )

    def initial_bias(self, init: initializers.Init, generator: torch.Generator) -> Tensor:
        shape = (2, 3 * self.units) if self.reset_after else (3 * self.units,)
        return init(shape, generator)

    def fused(self, mask: Tensor | None) -> bool:
        return self.reset_after and super().fused(mask)

    def project(self, seq: Tensor, drop: list[Tensor] | None, fused: bool) -> Tensor:
        if drop is not None and len(drop) > 1:
            y = _masked_matmul(seq, drop, self.kernel, self.units)
        else:
            y = (seq if drop is None else seq * drop[0]) @ self.kernel
        if self.use_bias:
            y = y + (self.bias[0] if self.reset_after else self.bias)
        return y

    def step(
        self, xt: Tensor, state: State, rec: list[Tensor] | None, fused: bool
    ) -> tuple[Tensor, State]:
        h, u = state[0], self.units
        kernel = self.recurrent_kernel
        rec_bias = self.bias[1] if self.use_bias and self.reset_after else None
        if rec is None:
            hp = h @ kernel if self.reset_after else h @ kernel[:, : 2 * u]
            if rec_bias is not None:
                hp = hp + rec_bias
        else:
            n = 3 if self.reset_after else 2
            hp = _masked_matmul(h, rec[:n], kernel[:, : n * u], u)
            if rec_bias is not None:
                hp = hp + rec_bias
        x_z, x_r, x_h = torch.chunk(xt, 3, dim=1)
        z = self.recurrent_activation_fn(x_z + hp[:, :u])
        r = self.recurrent_activation_fn(x_r + hp[:, u : 2 * u])
        if self.reset_after:
            recurrent_h = r * hp[:, 2 * u :]
        else:
            h_h = h if rec is None else h * rec[2]
            recurrent_h = (r * h_h) @ kernel[:, 2 * u :]
        hh = self.activation_fn(x_h + recurrent_h)
        h = z * h + (1 - z) * hh
        return h, (h,)

    def run_fast(self, x: Tensor, drop: list[Tensor] | None) -> Tensor | None:
        return self.cudnn(x, drop) if self.cudnn_ok(x) else None

    def cudnn(self, x: Tensor, drop: list[Tensor] | None) -> Tensor:
        """torch's fused GRU with Keras's weights, gates reordered from [z, r, h] to torch's
        [r, z, n]."""
        seq = self.fast_input(x, drop)
        u = self.units

        def reorder(w: Tensor) -> Tensor:
            z, r, h = _blocks(w, 3, u)
            return torch.cat([r, z, h], dim=-1)

        params = [
            reorder(self.kernel).T.contiguous(),
            reorder(self.recurrent_kernel).T.contiguous(),
            reorder(self.bias[0]),
            reorder(self.bias[1]),
        ]
        h0 = torch.zeros((1, x.shape[0], u), dtype=x.dtype, device=x.device)
        out, _ = torch.gru(seq, h0, params, True, 1, 0.0, torch.is_grad_enabled(), False, True)
        return out if self.return_sequences else out[:, -1]
