"""Compiled kernels of the losses.

Every kernel has the losses' implementation signature
``k(y, a, inv, out, want_value) -> float``: it writes the gradient into
``out`` (skipped when ``out`` is None, a case Numba compiles separately) and
returns the loss (0.0 when ``want_value`` is false), ``inv`` being one over
the count a mean divides by.  The elementwise losses take any shape through
``ravel()``; the softmax cross-entropy takes the canonical C-contiguous
``(n, B)`` layout of :mod:`.normalizers`.  Values accumulate in float64.

``math.log(0)`` is ``-inf`` and ``x / 0`` is ``inf`` or ``nan`` as in numpy
(``error_model="numpy"``), without numpy's floating-point warnings.
"""
from __future__ import annotations

import math

import numpy as np

from ..._jit import lazy_njit
from .normalizers import col_sum, shift_exp, sum_sq_diff

__all__ = ["k_cross_entropy", "k_cross_entropy_mean", "k_mse", "k_softmax_xent", "k_softmax_xent_from_e"]


@lazy_njit
def k_cross_entropy(y, a, inv, out, want_value):
    """``-sum(y log a)`` and its gradient ``-y / a``."""
    yf, af = y.ravel(), a.ravel()
    if out is not None:
        of = out.ravel()
        for i in range(af.size):
            of[i] = -yf[i] / af[i]
    v = 0.0
    if want_value:
        for i in range(af.size):
            v -= yf[i] * math.log(af[i])
    return v


@lazy_njit
def k_cross_entropy_mean(floor, y, a, inv, out, want_value):
    """``-sum(y log max(a, floor)) * inv`` and its gradient, 0 where ``a <= floor``.

    Comparisons are written so that a NaN in ``a`` stays NaN, as numpy's
    ``maximum`` propagates it.
    """
    yf, af = y.ravel(), a.ravel()
    clip = af.dtype.type(floor)
    if out is not None:
        of = out.ravel()
        scale = af.dtype.type(-inv)
        zero = scale - scale
        for i in range(af.size):
            of[i] = zero if af[i] <= clip else yf[i] / af[i] * scale
    v = 0.0
    if want_value:
        for i in range(af.size):
            x = clip if af[i] < clip else af[i]
            v -= yf[i] * math.log(x)
    return v * inv


@lazy_njit
def k_mse(y, a, inv, out, want_value):
    """``sum((a - y)^2) * inv`` and its gradient ``2 (a - y) * inv``.

    The sum runs four partial accumulators (a fixed order): one chain of
    dependent additions would cost a full add latency per element.
    """
    yf, af = y.ravel(), a.ravel()
    n = af.size
    if out is not None:
        of = out.ravel()
        two = af.dtype.type(2.0 * inv)
        for i in range(n):
            of[i] = two * (af[i] - yf[i])
    return sum_sq_diff(af, yf) * inv if want_value else 0.0


@lazy_njit
def _xent_term(yi, shifted, log_sum, floor_log):
    # -y log(max(softmax, clip)) for one entry, from z - max z and log sum exp(z - max z)
    if yi == 0:
        return 0.0
    ls = shifted - log_sum
    return -yi * (floor_log if ls < floor_log else ls)


@lazy_njit
def k_softmax_xent_from_e(floor_log, z, mx, e, y, inv_m):
    """The fused loss and gradient once ``e = exp(z - mx)`` is known.

    numpy computes ``e`` with its SIMD ``exp`` for large inputs; the gradient
    ``(e / sum(e) - y) * inv_m`` overwrites ``e``.  Two passes over memory:
    the column sums, then the clipped loss and the gradient.  One ``log``
    per column: the per-element ``log`` of the unfused expression is never
    computed.  A single column loops over its flat view (see :mod:`.normalizers`).
    """
    n, B = z.shape
    s = col_sum(e)
    logs = s.copy()
    for b in range(B):
        logs[b] = math.log(s[b])
    inv = (1.0 / s).astype(z.dtype)
    scale = z.dtype.type(inv_m)
    loss = 0.0
    if B == 1:
        zf, ef, yf, m0, l0, c = z.ravel(), e.ravel(), y.ravel(), mx[0], logs[0], inv[0]
        for i in range(n):
            loss += _xent_term(yf[i], zf[i] - m0, l0, floor_log)
            ef[i] = (ef[i] * c - yf[i]) * scale
        return loss * inv_m
    for i in range(n):
        for b in range(B):
            loss += _xent_term(y[i, b], z[i, b] - mx[b], logs[b], floor_log)
            e[i, b] = (e[i, b] * inv[b] - y[i, b]) * scale
    return loss * inv_m


@lazy_njit
def k_softmax_xent(floor_log, y, z, inv_m, out, want_value):
    """Softmax + clipped mean cross-entropy, everything compiled (small inputs).

    The loss costs one ``log`` per column, so it is computed whether or not
    ``want_value`` asks for it; without ``out`` the gradient goes to scratch.
    """
    if out is None:
        buf = np.empty(z.shape, z.dtype)
    else:
        buf = out
    mx = shift_exp(z, buf)
    return k_softmax_xent_from_e(floor_log, z, mx, buf, y, inv_m)
