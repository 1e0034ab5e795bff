"""`jit_compile=True`: the training step's forward pass and loss, compiled by torch.compile.

Keras's torch backend compiles its whole train step with torch.compile; here the forward pass
and the loss are compiled (autograd then runs the compiled graph's backward) and the optimizer
update, constraints and metric updates stay eager, so their arithmetic is the eager one. The
inductor backend needs a C++ compiler (CPU) or Triton (GPU); without them the step is traced
with the "aot_eager" backend instead, and where torch.compile itself is unavailable the fit is
refused at its start, naming `compile.jit_compile`.
"""

from __future__ import annotations

import shutil
import types
from collections.abc import Callable
from typing import Any, TypeVar

import torch

from app.engine.config.errors import ConfigError, Loc

F = TypeVar("F", bound=Callable[..., Any])


def check_available(loc: Loc) -> None:
    """Refuse jit_compile=True where torch.compile cannot run."""
    try:
        import torch._dynamo as dynamo

        supported = bool(dynamo.is_dynamo_supported())
    except Exception:  # an import failure of torch's compiler stack means: not available
        supported = False
    if not supported or not hasattr(torch, "compile"):
        raise ConfigError(
            loc,
            "jit_compile=true needs torch.compile, which is not available on this "
            f"installation (torch {torch.__version__}); use false or 'auto'",
        )


def backend_for(device: torch.device) -> str:
    """inductor where its code generator can run, else aot_eager (traced, not code-generated)."""
    if device.type == "cuda":
        try:
            from torch.utils._triton import has_triton

            return "inductor" if has_triton() else "aot_eager"
        except ImportError:
            return "aot_eager"
    if device.type == "cpu":
        return "inductor" if shutil.which("c++") or shutil.which("g++") else "aot_eager"
    return "aot_eager"


def _own_code(method: F) -> F:
    """`method` (bound) as a function with a code object of its own. torch.compile keeps its
    compiled graphs on the code object, with a limit on how many (then it runs the step
    eagerly): a copy per trainer gives each fit its own, and its graphs go with it."""
    func = method.__func__  # type: ignore[attr-defined]
    own = types.FunctionType(func.__code__.replace(), func.__globals__, func.__name__,
                             func.__defaults__, func.__closure__)  # fmt: skip
    return types.MethodType(own, method.__self__)  # type: ignore[attr-defined,return-value]


def compile_step(fn: F, device: torch.device, loc: Loc, backend: str | None = None) -> F:
    """`fn`, a bound method of one trainer, compiled for that trainer alone, for static
    shapes (a fit compiles once for its batch size and once for a smaller last batch).
    torch.compile's automatic dynamic shapes remember the shapes seen by source location,
    across trainers: after one model's fit in a worker, the next model's step was traced with
    its spatial dimensions symbolic, which the convolution's code generator refused."""
    check_available(loc)
    compiled: F = torch.compile(  # type: ignore[assignment]
        _own_code(fn), backend=backend or backend_for(device), dynamic=False
    )
    return compiled
