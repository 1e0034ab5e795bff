"""Tolerances for the differential tests, derived from the computation (see CONTRIBUTING.md).

Two derivations, both stated in the failure message of `assert_close`:
- `eps_bound(n_ops, scale)`: float32 epsilon times a bound on the roundings that can accumulate
  into one value (reduction lengths and elementwise operations), times the magnitude of the
  quantities rounded: for single passes (a forward value, a loss, a metric, one step);
- `keras_drift(run, weights)`: Keras's own sensitivity, measured by running the Keras side again
  from initial weights moved by one ulp; `drift_tolerance` turns it into a tolerance (a stated
  multiple, floored at a few ulps of the values). Every fit over several steps uses this.

A bit-exact comparison uses `assert_bit_exact` (or plain `np.testing.assert_array_equal`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

EPS32 = float(np.finfo(np.float32).eps)  # 2**-23: one rounding of a float32 in [1, 2)

# Why a measured drift is multiplied by 4: ours and Keras's roundoff are two independent streams,
# each about as large as the one-ulp perturbation measured (x2), and another CPU's kernels round
# in another order, which moves both again (x2).
DRIFT_FACTOR = 4.0
# The floor under a measured drift, in float32 ulps of the compared values' magnitude: a drift can
# measure zero where the perturbation happened to be absorbed, and two correct implementations
# still differ there by the last rounding of each of a few operations.
ULPS_FLOOR = 4


def eps_bound(n_ops: float, scale: float = 1.0) -> float:
    """The worst-case absolute error of `n_ops` float32 roundings on quantities of magnitude
    `scale`: n_ops * eps32 * scale (a sum of n terms of magnitude s is within (n - 1) eps s of
    exact, whatever order a kernel adds in). Count n_ops as the longest chain of roundings that
    reaches the value: the reduction lengths (fan-in, batch, sequence) plus the elementwise
    operations after them, times the optimizer steps for a value after training."""
    if n_ops < 0 or scale < 0:
        raise ValueError("n_ops and scale are not negative")
    return float(n_ops) * EPS32 * float(scale)


def step_ops(*, fan_ins: Sequence[int], batch: int, elementwise: int = 10) -> int:
    """Roundings into one training step's results: each layer's reduction (its fan-in: inputs x
    kernel size for a convolution, units for a recurrent step) on the way forward and back, the
    batch reduction of the gradients and the loss, and `elementwise` operations (activations,
    the loss, the optimizer's update; 10 covers Adam's)."""
    return sum(fan_ins) + batch + elementwise


@dataclass(frozen=True)
class Tolerance:
    """|ours - theirs| <= atol + rtol * |theirs|, elementwise, and `why` says where they come
    from (it is printed when the comparison fails)."""

    atol: float
    rtol: float
    why: str

    @classmethod
    def eps(cls, n_ops: float, *, scale: float = 1.0, why: str) -> Tolerance:
        """Relative eps_bound(n_ops) and, for values near zero, absolute eps_bound(n_ops, scale)."""
        return cls(
            atol=eps_bound(n_ops, scale),
            rtol=eps_bound(n_ops),
            why=f"float32 eps x {n_ops:g} roundings ({why}), atol at scale {scale:g}",
        )

    @classmethod
    def fit(cls, *, steps: int, per_step: int, scale: float = 1.0, what: str) -> Tolerance:
        """The worst case of a fit: eps x steps x per-step roundings (`step_ops`). Far looser than
        roundoff is in practice: only for a fit where no drift can be measured (one that is
        discontinuous in its start); every other fit uses `drift_tolerance`."""
        return cls.eps(steps * per_step, scale=scale,
                       why=f"{steps} steps x {per_step} per step of {what}")  # fmt: skip

    @classmethod
    def ulps(cls, n: float, *, scale: float, why: str = "") -> Tolerance:
        """`n` float32 ulps of values of magnitude `scale` (absolute: n x eps32 x scale, which is
        at least n ulps of every value up to `scale`)."""
        because = f" ({why})" if why else ""
        return cls(atol=eps_bound(n, scale), rtol=0.0,
                   why=f"{n:g} ulps of the magnitude {scale:.3g}{because}")  # fmt: skip

    @classmethod
    def from_drift(
        cls, drift: float, *, floor: Tolerance, factor: float = DRIFT_FACTOR
    ) -> Tolerance:
        """`factor` x Keras's measured one-ulp drift, never tighter than `floor` (a drift can
        measure zero where the perturbation happened to be absorbed)."""
        return cls(
            atol=max(floor.atol, factor * drift),
            rtol=floor.rtol,
            why=f"max({factor:g} x Keras's one-ulp drift {drift:.3g}, floor: {floor.why})",
        )


def keras_drift(
    run: Callable[[list[np.ndarray]], Sequence[Any] | Mapping[str, Any]],
    weights: Sequence[np.ndarray],
    *,
    baseline: Sequence[Any] | Mapping[str, Any] | None = None,
) -> list[float] | dict[str, float]:
    """Keras's own sensitivity to roundoff: `run` (the Keras side, from the given initial weights
    to its results: final weights, History values) again from every initial weight moved by one
    ulp, compared with the unperturbed results (`baseline`, run here when not given). Returns the
    largest absolute change of each result: a list, or a dict where `run` returns a mapping.
    Roundoff that differs between two correct implementations moves the results about as much."""
    a = run(list(weights)) if baseline is None else baseline
    b = run([np.nextafter(w, np.float32(np.inf)).astype(w.dtype) for w in weights])

    def gap(x: Any, y: Any) -> float:
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if not x.size:
            return 0.0
        if x.shape != y.shape:
            raise AssertionError(f"Keras's runs differ in shape: {x.shape} and {y.shape}")
        same = (x == y) | (np.isnan(x) & np.isnan(y))  # a NaN both runs reach is no drift
        with np.errstate(invalid="ignore"):  # inf - inf where both runs overflowed
            d = float(np.where(same, 0.0, np.abs(x - y)).max())
        # A one-ulp start moves a fit by amplified roundoff, not by percents: a larger change
        # means the two runs differ in more than their weights (an unseeded layer, a changed
        # order). Amplified roundoff reaches per mille: the first scenario's 32 Adam(0.1) steps
        # moved a weight by 1.4e-3, and its accuracy by one sample of 500 (2e-3), from a one-ulp
        # start (from some of its random initial weights, not from most).
        scale = max(1.0, float(np.nanmax(np.abs(x), initial=0.0)))
        assert d <= 1e-2 * scale, f"Keras's runs differ by {d:.3g}"
        return d

    if isinstance(a, Mapping):
        assert isinstance(b, Mapping) and sorted(a) == sorted(b)
        return {k: gap(a[k], b[k]) for k in a}
    assert not isinstance(b, Mapping)
    return [gap(x, y) for x, y in zip(a, b, strict=True)]


def pool_weight_drifts(drift: Mapping[str, float]) -> dict[str, float]:
    """`drift` with the drift of every weight ("weight I", "saved weight I") replaced by the largest
    of its group: an optimizer's step moves every weight by its rate times a normalised gradient,
    so roundoff moves them by alike absolute amounts, and one perturbed run samples that for each
    array only once (a bias whose gradient cancels can differ more than its own sample)."""
    groups: dict[str, float] = {}
    for name, d in drift.items():
        head, _, index = name.rpartition(" ")
        if head.endswith("weight") and index.isdigit():
            groups[head] = max(groups.get(head, 0.0), d)
    pooled = dict(drift)
    for name in drift:
        head, _, index = name.rpartition(" ")
        if head in groups and index.isdigit():
            pooled[name] = groups[head]
    return pooled


def drift_tolerance(drift: float, values: Any, *, ulps: float = ULPS_FLOOR) -> Tolerance:
    """The tolerance of a fit's result (History values, final weights, what is computed from them)
    whose Keras one-ulp `drift` was measured (`keras_drift`): DRIFT_FACTOR x that drift, never
    tighter than `ulps` float32 ulps of the largest of `values` (Keras's result)."""
    v = np.abs(np.asarray(values, dtype=np.float64))
    scale = float(v[np.isfinite(v)].max(initial=0.0))
    return Tolerance.from_drift(drift, floor=Tolerance.ulps(ulps, scale=scale))


def assert_within_drift(
    ours: Mapping[str, Any], theirs: Mapping[str, Any], drift: Mapping[str, float]
) -> None:
    """Every named result of ours as Keras's, each to `drift_tolerance` of its measured drift
    (the weights' drifts pooled: `pool_weight_drifts`)."""
    assert sorted(ours) == sorted(theirs), f"results {sorted(ours)} and {sorted(theirs)}"
    drift = pool_weight_drifts(drift)
    for name, value in theirs.items():
        assert_close(ours[name], value, drift_tolerance(drift[name], value), what=name)


def assert_close(ours: Any, theirs: Any, tol: Tolerance, *, what: str = "") -> None:
    """Elementwise |ours - theirs| <= tol.atol + tol.rtol * |theirs|; a failure names the worst
    element, its excess and the derivation of the tolerance."""
    a = np.asarray(ours, dtype=np.float64)
    b = np.asarray(theirs, dtype=np.float64)
    assert a.shape == b.shape, f"{what}: shapes {a.shape} and {b.shape}"
    same = (a == b) | (np.isnan(a) & np.isnan(b))  # infinities and NaNs match themselves
    with np.errstate(invalid="ignore"):
        err = np.where(same, 0.0, np.abs(a - b))
    with np.errstate(invalid="ignore"):  # 0 x inf where rtol is 0 and Keras overflowed
        allowed = tol.atol + tol.rtol * np.abs(b)
    bad = ~same & ~(err <= allowed)
    if not bad.any():
        return
    i = np.unravel_index(int(np.argmax(np.where(bad, err - allowed, -np.inf))), a.shape)
    raise AssertionError(
        f"{what or 'values'}: {int(bad.sum())} of {a.size} differ beyond the tolerance; worst at "
        f"{tuple(int(k) for k in i)}: ours {a[i]!r}, Keras {b[i]!r}, |diff| {err[i]:.3g} > "
        f"allowed {allowed[i]:.3g} (atol {tol.atol:.3g} + rtol {tol.rtol:.3g} x |Keras|), "
        f"derived from: {tol.why}"
    )


def assert_bit_exact(ours: Any, theirs: Any, *, what: str = "") -> None:
    """The same bits: the same operations in the same order on both sides."""
    np.testing.assert_array_equal(np.asarray(ours), np.asarray(theirs), err_msg=what)
