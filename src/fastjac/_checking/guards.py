"""Guards of the checks: NaN/inf, and non-determinism, judged before any comparison."""
from __future__ import annotations

import numpy as np

__all__ = ["nonfinite_positions", "describe_positions", "deterministic"]


def nonfinite_positions(arr, limit=5):
    """Up to ``limit`` index tuples where ``arr`` is NaN or inf, and the count."""
    arr = np.asarray(arr)
    bad = ~np.isfinite(arr)
    count = int(bad.sum())
    where = [tuple(int(i) for i in b) for b in np.argwhere(bad)[:limit]]
    return where, count


def describe_positions(where, count) -> str:
    text = ", ".join(str(w) for w in where)
    return text + (f" and {count - len(where)} more" if count > len(where) else "")


def deterministic(fx, again, eps, batched):
    """``(ok, max_difference)``: does ``f(x)`` evaluated again agree with the first call?

    The second value comes from the check's own stream (the last point of its
    first batch is ``x`` itself), so the guard costs one point, not one call.
    Two evaluations may differ by rounding when a library sums in another
    order (a batched matrix product, for one): a few ``EPS |f|`` for single
    calls, the batching probe's ``8 EPS**(2/3)`` for a batch.  Real randomness
    (dropout, sampling, an unseeded RNG) is far larger.
    """
    fx = np.asarray(fx, dtype=np.float64).reshape(-1)
    again = np.asarray(again, dtype=np.float64).reshape(-1)
    if again.shape != fx.shape:
        return False, float("inf")
    with np.errstate(invalid="ignore"):
        diff = np.abs(again - fx)
    diff = np.where(np.isnan(again) & np.isnan(fx), 0.0, diff)
    scale = max(1.0, float(np.max(np.abs(fx), initial=0.0)))
    allowed = (8 * eps ** (2 / 3) if batched else 4 * eps) * np.maximum(np.abs(fx), scale if
                                                                      batched else 1.0)
    ok = bool(np.all(diff <= allowed))
    return ok, float(np.nanmax(diff)) if diff.size else 0.0
