"""Guards of the checks: NaN/inf, non-determinism, and the second opinion.

The second opinion re-evaluates ``f`` along one input direction at nine
points ``x + c*d*e_j``, ``c = -4..4`` with ``d = h/4`` (a quarter of the
first step), and derives from them, with no further calls:

* a 6th-order central estimate and a 4th-order one (their difference
  estimates the truncation error of the re-estimate);
* the eight secant slopes between neighbouring points.  For a smooth f
  they lie on a low-degree polynomial in the position; a kink inside the
  window puts a jump into them that a cubic fit cannot follow (the largest
  residual is at least ~0.1 of the jump for a kink anywhere inside the
  window; see ``docs/checks.md``).  Their range is the set of one-sided
  slopes, against which an expected value at a kink is judged.
"""
from __future__ import annotations

import numpy as np

from ._engine import readonly

__all__ = ["nonfinite_positions", "determinism", "SecondOpinion", "second_opinion"]

_C = np.arange(-4, 5)
#: Weights over c = -4..4 (units of 1/d).
_W6 = np.array([0, -1 / 60, 3 / 20, -3 / 4, 0, 3 / 4, -3 / 20, 1 / 60, 0])
_W4 = np.array([0, 0, 1 / 12, -2 / 3, 0, 2 / 3, -1 / 12, 0, 0])
_MID = np.arange(-4, 4) + 0.5
_V = np.vander(_MID, 4)
#: Projector onto cubics in the secant midpoints: residual = (I - P) S.
_RESID = np.eye(8) - _V @ np.linalg.pinv(_V)
#: Kink residual relative to the jump, smallest over kink positions inside the window.
KINK_RESIDUAL = 0.1


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


def determinism(f, x, fx, eps):
    """Call ``f(x)`` once more; return ``(ok, max_difference)``.

    Two calls at the same point may differ by rounding when a library picks
    a different summation order, so a few EPS of ``|f|`` are allowed; any
    real randomness (dropout, sampling) is far larger.
    """
    again = np.asarray(f(readonly(x.copy())))
    if again.shape != fx.shape:
        return False, float("inf")
    with np.errstate(invalid="ignore"):
        diff = np.abs(again.astype(np.float64) - fx.astype(np.float64))
    both_nan = np.isnan(again) & np.isnan(fx)
    diff = np.where(both_nan, 0.0, diff)
    scale = np.maximum(np.abs(fx.astype(np.float64)), 1.0)
    ok = bool(np.all(diff <= 4 * eps * scale))
    return ok, float(np.nanmax(diff)) if diff.size else 0.0


class SecondOpinion:
    """Estimates along one column from nine points (see the module docstring)."""

    def __init__(self, F, d):
        # F: (9, m) values at c = -4..4, d: the spacing.
        F = np.asarray(F, dtype=np.float64)
        self.d6 = _W6 @ F / d
        self.d4 = _W4 @ F / d
        S = np.diff(F, axis=0) / d
        self.secants = S
        self.kink = np.max(np.abs(_RESID @ S), axis=0)

    def contract(self, C):
        """The same quantities for the contracted function ``C @ f``."""
        out = object.__new__(SecondOpinion)
        out.d6, out.d4 = C @ self.d6, C @ self.d4
        out.secants = self.secants @ C.T
        out.kink = np.max(np.abs(_RESID @ out.secants), axis=0)
        return out


def second_opinion(g, t0, j, d, vectorized):
    """Evaluate ``g`` at ``t0 + c d e_j`` and return a :class:`SecondOpinion`
    plus the number of evaluations made.  ``F[4]`` reuses no earlier value so
    the nine points are self-consistent."""
    flat = t0.reshape(-1)
    pts = np.repeat(flat[None, :], len(_C), axis=0)
    pts[:, j] = flat[j] + _C * d
    shape = t0.shape
    F = None
    if vectorized:
        try:
            Y = np.asarray(g(readonly(pts.reshape((len(_C),) + shape))))
            F = Y.reshape(len(_C), -1)
        except Exception:  # fall back to single calls; the engine's probe already vetted f
            F = None
    if F is None:
        F = np.stack([np.asarray(g(readonly(p.reshape(shape).copy()))).reshape(-1) for p in pts])
    return SecondOpinion(F, d), len(_C)
