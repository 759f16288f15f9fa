"""Second opinions: what nine fresh points along a direction say about a flagged entry.

An entry whose first estimate misses the expected value is re-measured at
nine points ``x + c d v``, ``c = -4..4``, with ``d`` a quarter of the first
step.  The eight secant slopes between neighbouring points are the
evidence, read against the round-off model ``sigma`` of one secant:

smooth
    the secants lie on a cubic in their midpoints to within the noise: the
    6th-order estimate (and the 4th-order one, whose difference bounds its
    truncation) judges the expected value: *noise* or *bug*.
kink
    two straight pieces with one transition secant between them explain the
    secants, and the transition lies between the pieces' values there: if
    ``x`` sits inside a piece, that piece's slope at ``x`` judges the expected
    value (an error next to a kink is not hidden by it); if the kink is
    within one spacing of ``x``, the expected value must lie between the two
    one-sided slopes: *non-differentiable*.
jump
    the same two pieces, but the transition secant lies far outside them: ``f``
    jumps between two points.  Judged like a kink, the one-sided slopes being
    the pieces' own: *discontinuous* when the expected value matches the side
    it belongs to.
irregular
    neither: the round-off model is too optimistic for this ``f`` (an
    ill-conditioned computation, e.g. an eigen-decomposition in float32) or
    many kinks are crossed at once.  The caller re-measures at a quarter of
    the spacing; an estimate that converges to the expected value as the
    step shrinks is a kink effect (*non-differentiable*), one that wanders is
    *inconclusive*.

A kink at ``x`` is only believed when the finer spacing shows the same slope
jump: a smooth function's secant differences shrink with the spacing, a
kink's do not.  So a smooth, sharply curved function is never called
non-differentiable.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import tolerances as T

__all__ = ["OFFSETS", "Opinion", "classify", "converging"]

#: Offsets of the nine points, in units of the spacing ``d``.
OFFSETS = tuple(float(c) for c in range(-4, 5))

# Weights over c = -4..4 (units of 1/d) of the 6th- and 4th-order central estimates.
_W6 = np.array([0, -1 / 60, 3 / 20, -3 / 4, 0, 3 / 4, -3 / 20, 1 / 60, 0])
_W4 = np.array([0, 0, 1 / 12, -2 / 3, 0, 2 / 3, -1 / 12, 0, 0])
_MID = np.arange(-4, 4) + 0.5          # secant midpoints
_CUBIC = np.eye(8) - np.vander(_MID, 4) @ np.linalg.pinv(np.vander(_MID, 4))
# Smooth within noise: the cubic residual of eight secants, each with noise
# sigma, stays below ~2.5 sigma; 6 sigma leaves room for the model's scatter.
_SMOOTH = 6.0


def _line_fits():
    """For each transition secant k: projectors of the pieces left and right of it."""
    fits = []
    for k in range(8):
        sides = []
        for idx in (np.arange(0, k), np.arange(k + 1, 8)):
            if len(idx) >= 2:
                V = np.vander(_MID[idx], 2)
                P = V @ np.linalg.pinv(V)
                at = lambda mu, V=V: np.array([mu, 1.0]) @ np.linalg.pinv(V)  # noqa: E731
                sides.append((idx, np.eye(len(idx)) - P, at))
            else:
                sides.append((idx, None, None))
        fits.append(sides)
    return fits


_FITS = _line_fits()


@dataclass
class Opinion:
    """The second opinion on a set of entries, one value per entry.

    ``status`` holds status names (``'noise'``, ``'bug'``,
    ``'non-differentiable'``, ``'discontinuous'``, or ``'irregular'`` for the
    caller to refine); ``estimate`` the re-estimated derivative; ``noise``
    its uncertainty; ``evidence`` a sentence per entry (or None).
    """

    status: np.ndarray
    estimate: np.ndarray
    noise: np.ndarray
    evidence: list
    kink_at_x: np.ndarray     # the kink/jump lies within one spacing of x
    jump: np.ndarray          # slope jump across the kink (0 where none)


def classify(F, d, expected, tol, roundoff) -> Opinion:
    """Judge entries from their nine values.

    Parameters
    ----------
    F : ndarray, shape (9, P)
        ``f`` (contracted to the compared quantity) at ``x + c d v``.
    d : ndarray, shape (P,)
        The spacing of each entry's points (in units of its direction).
    expected, tol : ndarray, shape (P,)
    roundoff : ndarray, shape (P,)
        Model of the absolute rounding error of one value of ``F``.
    """
    F = np.asarray(F, dtype=np.float64)
    P = F.shape[1]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        S = np.diff(F, axis=0) / d                      # (8, P) secants
        # Rounding of the values at hand (f(x) may be 0 where its neighbours
        # are not), and of the fits' own arithmetic on the secants.
        eps = np.finfo(np.float64).eps
        window = T.ROUNDOFF_FACTOR * eps * np.max(np.abs(F), axis=0)
        rnd = np.maximum(roundoff, window) / d
        sigma = 2 * rnd + 16 * eps * np.max(np.abs(S), axis=0)  # noise of one secant
        d6, d4 = _W6 @ F / d, _W4 @ F / d
        cubic = np.max(np.abs(_CUBIC @ S), axis=0)
    status = np.full(P, "irregular", dtype=object)
    estimate, noise = d6.copy(), np.abs(d6 - d4) + 1.6 * rnd
    evidence = [None] * P
    kink_at_x = np.zeros(P, dtype=bool)
    jump = np.zeros(P)
    finite = np.all(np.isfinite(F), axis=0)
    status[~finite] = "nan"
    smooth = finite & (cubic <= _SMOOTH * sigma)
    for p in np.flatnonzero(smooth):
        status[p] = _judge(expected[p], tol[p], estimate[p], noise[p])
    for p in np.flatnonzero(finite & ~smooth):
        _pieces(p, S[:, p], sigma[p], rnd[p], expected[p], tol[p], status, estimate, noise,
                evidence, kink_at_x, jump)
    return Opinion(status, estimate, noise, evidence, kink_at_x, jump)


def _judge(e, tol, estimate, noise):
    return "noise" if abs(e - estimate) <= tol + T.NOISE_FACTOR * noise else "bug"


def _pieces(p, s, sigma, rnd, e, tol, status, estimate, noise, evidence, kink_at_x, jump):
    """Try the two-piece model (kink or jump) on one entry's secants."""
    best = None
    for k, (left, right) in enumerate(_FITS):
        res = 0.0
        for idx, resid, _ in (left, right):
            if resid is not None:
                res = max(res, float(np.max(np.abs(resid @ s[idx]))))
        if best is None or res < best[0]:
            best = (res, k)
    res, k = best
    if res > _SMOOTH * sigma:
        return  # irregular: neither smooth nor two pieces
    (li, _, lat), (ri, _, rat) = _FITS[k]
    mu = _MID[k]
    lval = (lat(mu) @ s[li]) if lat is not None else (s[li].mean() if len(li) else np.nan)
    rval = (rat(mu) @ s[ri]) if rat is not None else (s[ri].mean() if len(ri) else np.nan)
    l0 = (lat(0.0) @ s[li]) if lat is not None else lval
    r0 = (rat(0.0) @ s[ri]) if rat is not None else rval
    sides = [v for v in (lval, rval) if np.isfinite(v)]
    if not sides:
        return
    lo, hi = min(sides), max(sides)
    is_jump = not (lo - _SMOOTH * sigma <= s[k] <= hi + _SMOOTH * sigma)
    step = abs(rval - lval) if len(sides) == 2 else 0.0
    if not is_jump and step <= _SMOOTH * sigma:
        return  # the "two pieces" are one: a smooth curve the cubic missed, refine
    u = res + 1.6 * rnd
    jump[p] = step
    where = f"between {_at(k - 4)} and {_at(k - 3)}"
    if k <= 2 or k >= 5:
        # x lies inside a piece: its slope at x is a regular derivative estimate.
        estimate[p] = r0 if k <= 2 else l0
        noise[p] = u
        status[p] = _judge(e, tol, estimate[p], u)
        kind = "jumps" if is_jump else "has a kink"
        evidence[p] = (f"f {kind} {where} (d = spacing of the second look); x lies on the "
                       f"{'right' if k <= 2 else 'left'} piece, whose slope at x is "
                       f"{estimate[p]:.6g}")
        return
    kink_at_x[p] = True
    slack = tol + T.NOISE_FACTOR * u
    if is_jump:
        near = min((l0, r0), key=lambda v: abs(v - e))
        estimate[p], noise[p] = near, u
        status[p] = "discontinuous" if abs(e - near) <= slack else "bug"
        evidence[p] = (f"f jumps {where}: the secant across the jump is {s[k]:.3g} against "
                       f"one-sided slopes {l0:.6g} (left) and {r0:.6g} (right), and it grows as "
                       "the step shrinks instead of converging")
    else:
        lo0, hi0 = min(l0, r0), max(l0, r0)
        estimate[p], noise[p] = (l0 + r0) / 2, u + (hi0 - lo0) / 2
        if hi0 - lo0 <= tol:
            # A slope jump within the tolerance cannot explain a mismatch: judged
            # as a derivative, whatever bent f this little.
            status[p] = _judge(e, tol, estimate[p], noise[p])
            kink_at_x[p] = False
            return
        status[p] = "non-differentiable" if lo0 - slack <= e <= hi0 + slack else "bug"
        evidence[p] = (f"f has a kink {where}: one-sided slopes {l0:.6g} and {r0:.6g}")


def _at(c):
    """A point of the window, ``x - 2d`` style."""
    return "x" if c == 0 else f"x {'+' if c > 0 else '-'} {abs(c)}d"


def converging(estimates, e, tol):
    """Do estimates at shrinking steps approach ``e``, ending within their last change?

    ``estimates`` is ordered from the largest step to the smallest.  True when
    the smallest step's estimate is closer to ``e`` than the largest step's and
    within ``tol`` plus twice the last change: the mismatch is a function of
    the step (kinks crossed, curvature), not of the expected value.  A wrong
    expected value stays off by its error while the changes shrink.  (Kinks
    crossed at random make the misses shrink on average, not at every step,
    so no monotonicity is asked for.)
    """
    miss = [abs(v - e) for v in estimates]
    if not all(np.isfinite(miss)):
        return False
    return miss[-1] < miss[0] and miss[-1] <= tol + 2 * abs(estimates[-1] - estimates[-2])
