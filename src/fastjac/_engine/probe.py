"""The batching probe: does ``f`` evaluate a stack of points correctly?

``vectorized="auto"`` evaluates the first real block as one batch, in the
leading layout and then, if that fails, in the trailing one, and compares a
few points of the batch with single calls.  Broadcasting without error is
not enough: the notebook's softmax normalises over axis 0, which in a
leading stack is the batch axis, so it returns the right shape and wrong
numbers.  The same function is right in the trailing layout, where the
points are extra columns.  When neither layout verifies, ``f`` is called
once per point, and the reason is kept so the report can say why and how to
make ``f`` accept a batch.

A probe that succeeds costs nothing extra beyond its single calls: its batch
is the first block's evaluation.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .._jit import is_numba_dispatcher
from .directions import DenseDirections
from .strategies import STRATEGIES, BatchShapeError, call_single

__all__ = ["Decision", "probe", "fallback_strategy", "verify_points", "point_of",
           "FORCED"]

#: ``vectorized=`` value -> forced strategy (``False`` picks loop or numba).
FORCED = {True: "vectorized", "leading": "vectorized", "trailing": "vectorized-trailing"}


@dataclass
class Decision:
    """The outcome of a probe."""

    strategy: str
    first: tuple | None = None      # (F, f_center) of the probed block, if batched
    points: int = 0                 # points f saw during the probe
    calls: int = 0
    reasons: list = field(default_factory=list)


def fallback_strategy(f, x_shape, complex_step):
    """The point-by-point strategy for ``f``: the jitted driver for an ``@njit`` f."""
    if is_numba_dispatcher(f) and not complex_step and len(x_shape) > 0:
        return "numba"
    return "loop"


def point_of(x0, block, i, c, dtype):
    """Point ``x0 + c d_i`` of a block, computed exactly as the stack computes it."""
    p = x0.astype(dtype, copy=True)
    typ = np.dtype(dtype).type
    if isinstance(block, DenseDirections):
        p += block.V[i] * typ(c)
    else:
        lo, hi = block.indptr[i], block.indptr[i + 1]
        idx = block.indices[lo:hi]
        p[idx] = x0[idx] + block.steps[lo:hi] * typ(c)
    return p


def _real(task, y):
    y = np.asarray(y)
    if task.complex_step:
        return np.asarray(y.imag if y.dtype.kind == "c" else np.zeros_like(y, float), np.float64)
    return y.astype(np.float64)


def verify_points(task, block, offsets, F, rows, eps):
    """Compare ``F[s, i]`` with single calls at the given ``(s, i)``; ``(ok, why, calls)``.

    Row-mixing shows at the size of the step (``EPS**(1/3)`` relative), far
    above batching round-off (a few ``n EPS``); ``8 EPS**(2/3)`` sits between.
    """
    tol = 8 * eps ** (2 / 3)
    calls = 0
    for s, i in rows:
        p = point_of(task.x0, block, i, offsets[s], task.stack_dtype)
        try:
            single = call_single(task, p.reshape(task.x_shape))
        except Exception as exc:
            return False, f"a single call raised {type(exc).__name__}: {exc}", calls + 1
        calls += 1
        single = np.asarray(single)
        if single.shape != tuple(task.out_shape):
            return False, (f"a single call returned shape {single.shape}, the batch "
                           f"{tuple(task.out_shape)} per point"), calls
        a, b = _real(task, single).reshape(-1), np.asarray(F[s, i], np.float64).reshape(-1)
        if np.array_equal(a, b, equal_nan=True):
            continue
        with np.errstate(invalid="ignore", over="ignore"):
            diff = np.abs(a - b)
            scale = max(float(np.max(np.abs(a), initial=0.0)), float(np.max(np.abs(b), initial=0.0)))
        if not np.all(diff <= tol * scale):
            worst = float(np.nanmax(diff)) if diff.size and not np.all(np.isnan(diff)) else float("nan")
            return False, (f"point {s * block.size + i} of the batch differs from a single "
                           f"call by {worst:.3g} (f mixes the points of a batch)"), calls
    return True, "", calls


def _spots(S, b):
    """Up to three ``(s, i)`` spread over the batch: first, middle, last point."""
    rows = sorted({0, (S * b) // 2, S * b - 1})
    return [(r // b, r % b) for r in rows]


def probe(task, block, offsets, eps, center=False, layouts=("vectorized", "vectorized-trailing")):
    """Try each batched strategy on ``block``; the first that verifies wins.

    Returns a :class:`Decision`; ``task.strategy`` is set to its strategy.
    """
    S, b = len(offsets), block.size
    rows = S * b + bool(center)
    decision = Decision("loop")
    for name in layouts:
        if name == "vectorized-trailing" and len(task.x_shape) == 0:
            continue  # a scalar x has one layout
        task.strategy = name
        decision.points += rows
        decision.calls += 1
        try:
            F, fc = STRATEGIES[name].evaluate(task, block, offsets, center)
        except BatchShapeError as exc:
            decision.reasons.append(f"{_describe(name, task, rows)}: f returned shape "
                                    f"{exc.got}, not {exc.want}")
            continue
        except Exception as exc:
            text = str(exc).splitlines()[0] if str(exc) else ""
            text = text if len(text) <= 120 else text[:117] + "..."
            decision.reasons.append(f"{_describe(name, task, rows)}: {type(exc).__name__}: {text}")
            continue
        F = np.array(F, copy=True)  # f may reuse its output buffer during the single calls
        fc = None if fc is None else np.array(fc, copy=True)
        ok, why, calls = verify_points(task, block, offsets, F, _spots(S, b), eps)
        decision.points += calls
        decision.calls += calls
        if ok:
            decision.strategy, decision.first = name, (F, fc)
            return decision
        decision.reasons.append(f"{_describe(name, task, rows)}: {why}")
    decision.strategy = task.strategy = fallback_strategy(task.f, task.x_shape, task.complex_step)
    return decision


def _describe(name, task, rows):
    shape = ((rows,) + tuple(task.x_shape) if STRATEGIES[name].layout == "leading"
             else tuple(task.x_shape) + (rows,))
    return f"a batch of shape {shape}"


def fallback_note(reasons, strategy) -> str:
    """The report's sentence on why ``f`` runs point by point, and how to batch it."""
    how = ("To batch it, make f map a stack of points (k, *x.shape) -> (k, *f(x).shape) "
           "(reduce over axis=-1 rather than axis=0) or, column-major, (*x.shape, k) -> "
           "(*f(x).shape, k); fastjac verifies either layout by itself.")
    calls = "a jitted driver calls f once per point" if strategy == "numba" else \
        "fastjac calls f once per point"
    return f"f could not be evaluated on a batch, so {calls} ({'; '.join(reasons)}). {how}"
