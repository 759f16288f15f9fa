"""Step rules: how far to move each coordinate, per dtype and stencil.

Small, separately tested functions in the manner of scipy's ``_numdiff``.
"""
from __future__ import annotations

import numpy as np

from .stencils import Stencil

__all__ = ["eps_for", "relative_step", "absolute_step"]


def eps_for(*dtypes) -> float:
    """Machine epsilon of the *least* precise floating dtype given.

    Integer and boolean dtypes are computed in float64 and do not lower it.
    """
    eps = np.finfo(np.float64).eps
    for dt in dtypes:
        dt = np.dtype(dt)
        if dt.kind == "c":
            dt = np.finfo(dt).dtype
        if dt.kind == "f":
            eps = max(eps, float(np.finfo(dt).eps))
    return eps


def relative_step(stencil: Stencil, eps: float) -> float:
    """Relative step ``EPS**(1/(p+1))`` for a stencil of order ``p``.

    Notes
    -----
    The error of a stencil of order ``p`` is about ``C_t h**p |f^(p+1)|``
    (truncation) plus ``C_r EPS |f| / h`` (round-off in the differences);
    the sum is smallest at ``h ~ EPS**(1/(p+1))``.  That gives ``EPS**(1/2)``
    for one-sided first order, ``EPS**(1/3)`` for second-order central and
    ``EPS**(1/5)`` for fourth order (Nocedal & Wright, *Numerical
    Optimization*, 2nd ed., sec. 8.1).

    The complex step subtracts nothing, so it has no round-off term and its
    step only has to make ``h**2 f'''`` negligible: ``EPS`` itself.
    """
    if stencil.complex_step:
        return eps
    return eps ** (1.0 / (stencil.order + 1))


def absolute_step(x: np.ndarray, stencil: Stencil, eps: float, step=None, out=None) -> np.ndarray:
    """Per-element step actually taken, ``(x + h) - x``, never zero.

    Parameters
    ----------
    x : ndarray, shape (n,)
        The point, in the working dtype.
    stencil : Stencil
    eps : float
        Machine epsilon from :func:`eps_for`.
    step : None, float or array_like, shape (n,), optional
        ``None`` gives ``relative_step * max(1, |x_j|)``.  Otherwise the
        absolute step, a scalar or one per element.
    out : ndarray, shape (n,), optional
        Where to write the steps (x's dtype): a caller's scratch buffer.

    Returns
    -------
    h : ndarray, shape (n,)
        Positive steps in x's dtype.

    Notes
    -----
    Taking ``(x + h) - x`` makes the step exactly representable, so the
    difference quotient divides by the step that was really taken
    (scipy ``_compute_absolute_step`` does the same).
    """
    dtype = x.dtype
    if step is None:
        h = np.abs(x, out=out)
        np.maximum(h, 1.0, out=h)
        h *= dtype.type(relative_step(stencil, eps))
    else:
        h = np.abs(np.broadcast_to(np.asarray(step, dtype=np.float64), x.shape)).astype(dtype)
    if stencil.complex_step:
        # x + i h is exact, so there is nothing to round.
        return h
    largest = max(abs(c) for c in stencil.offsets)
    with np.errstate(over="ignore", invalid="ignore"):
        taken = np.add(x, h, out=h)
        taken -= x
    # A step below x's spacing rounds to zero; fall back to one ulp * largest offset.
    # (The reduction first: a mask the size of x is one more pass, rarely needed.)
    if taken.size and not taken.min() > 0:
        tiny = taken <= 0
        taken[tiny] = np.spacing(np.abs(x[tiny]).astype(dtype)) * largest
    return taken
