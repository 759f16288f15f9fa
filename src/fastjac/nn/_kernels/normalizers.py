"""Compiled kernels of softmax and log-softmax, canonical ``(n, B)`` layout.

Features on axis 0, the batch on axis 1, C-contiguous.  Per-column
reductions run row by row with one accumulator per column, so memory is
streamed in order (and a single column, ``B == 1``, gets its own loop with
one scalar accumulator).  Sums accumulate in float64 whatever the dtype.

``*_from_e`` kernels take ``e = exp(z - max z)`` computed by numpy (its SIMD
``exp`` is several times faster than the scalar libm Numba calls) and fuse
everything after it, in place in ``e`` (a separate output that aliases the
input would defeat LLVM's vectoriser).  The others run entirely compiled
and win on small inputs, where numpy's per-call overhead dominates.

A single column (``B == 1``, a 1-D input) takes loops over its flat view:
a nested loop with an inner trip count of 1 neither vectorises nor keeps
the sum's dependency chain short.  Sums of one column run four partial
accumulators (a fixed, deterministic order: no fastmath reassociation).

Zero-size inputs (``n == 0`` or ``B == 0``) write nothing and return.
"""
from __future__ import annotations

import math

import numpy as np

from ..._jit import lazy_njit

__all__ = ["col_dot", "col_max", "col_sum", "k_log_softmax", "k_log_softmax_from_e", "k_log_softmax_jac_stack",
           "k_log_softmax_vjp", "k_log_softmax_vjp_from_e", "k_softmax", "k_softmax_from_e",
           "k_softmax_jac_stack", "k_softmax_vjp", "k_softmax_vjp_from_e", "shift_exp", "sum_sq_diff"]


# ------------------------------------------------------------------ column helpers
@lazy_njit
def _term(x, y, i, mode):
    # the i-th term of a sum: x[i] (mode 0), x[i] y[i] (1) or (x[i] - y[i])^2 (2), in float64
    xi = np.float64(x[i])
    if mode == 0:
        return xi
    if mode == 1:
        return xi * np.float64(y[i])
    d = xi - np.float64(y[i])
    return d * d


@lazy_njit
def _sum4(x, y, mode):
    """A sum of the terms of 1-D arrays in four scalar partial sums (registers, a fixed order)."""
    n = x.size
    s0 = s1 = s2 = s3 = 0.0
    m = n - n % 4
    for i in range(0, m, 4):
        s0 += _term(x, y, i, mode)
        s1 += _term(x, y, i + 1, mode)
        s2 += _term(x, y, i + 2, mode)
        s3 += _term(x, y, i + 3, mode)
    for i in range(m, n):
        s0 += _term(x, y, i, mode)
    return (s0 + s1) + (s2 + s3)


@lazy_njit
def sum_sq_diff(x, y):
    """``sum((x - y)^2)`` of 1-D arrays, float64."""
    return _sum4(x, y, 2)


@lazy_njit
def col_dot(x, y):
    """Column sums of ``x * y`` (``y`` None: of ``x``), float64."""
    n, B = x.shape
    s = np.zeros(B, np.float64)
    if B == 1:
        xf = x.ravel()
        s[0] = _sum4(xf, xf, 0) if y is None else _sum4(xf, y.ravel(), 1)
        return s
    for i in range(n):
        for b in range(B):
            s[b] += x[i, b] if y is None else x[i, b] * y[i, b]
    return s


@lazy_njit
def col_sum(x):
    """Column sums of ``x``, float64."""
    return col_dot(x, None)


@lazy_njit
def col_max(z):
    """Column maxima of ``z`` (n >= 1 rows)."""
    n, B = z.shape
    mx = z[0].copy()
    for i in range(1, n):
        for b in range(B):
            if z[i, b] > mx[b]:
                mx[b] = z[i, b]
    return mx


@lazy_njit
def shift_exp(z, out):
    """``out = exp(z - max z)`` per column, the compiled way (scalar exp); returns the maxima."""
    n, B = z.shape
    if n == 0:
        return np.zeros(B, z.dtype)
    mx = col_max(z)
    for i in range(n):
        for b in range(B):
            out[i, b] = math.exp(z[i, b] - mx[b])
    return mx


# ------------------------------------------------------------------ forward
@lazy_njit
def k_softmax_from_e(e):
    """``e <- e / sum(e)`` per column."""
    n, B = e.shape
    inv = (1.0 / col_sum(e)).astype(e.dtype)
    if B == 1:
        ef, c = e.ravel(), inv[0]
        for i in range(n):
            ef[i] *= c
        return
    for i in range(n):
        for b in range(B):
            e[i, b] *= inv[b]


@lazy_njit
def k_softmax(z, out):
    """Stable softmax per column of ``z``, written to ``out``."""
    shift_exp(z, out)
    k_softmax_from_e(out)


@lazy_njit
def k_log_softmax_from_e(r, e):
    """``r <- r - log(sum(e))`` per column, with ``r = z - max z``, ``e = exp(r)``."""
    n, B = r.shape
    s = col_sum(e)
    lse = np.empty(B, r.dtype)
    for b in range(B):
        lse[b] = math.log(s[b])
    if B == 1:
        rf, c = r.ravel(), lse[0]
        for i in range(n):
            rf[i] -= c
        return
    for i in range(n):
        for b in range(B):
            r[i, b] -= lse[b]


@lazy_njit
def k_log_softmax(z, out):
    n, B = z.shape
    if n == 0:
        return
    mx = col_max(z)
    e = np.empty_like(out)
    for i in range(n):
        for b in range(B):
            r = z[i, b] - mx[b]
            out[i, b] = r
            e[i, b] = math.exp(r)
    k_log_softmax_from_e(out, e)


# ------------------------------------------------------------------ Jacobian stacks
@lazy_njit
def k_softmax_jac_stack(a, out):
    """``out[b] = diag(a[:, b]) - a[:, b] a[:, b]^T``; ``a`` (n, B), ``out`` (B, n, n)."""
    n, B = a.shape
    col = np.empty(n, a.dtype)
    for b in range(B):
        for i in range(n):
            col[i] = a[i, b]
        for i in range(n):
            ai = col[i]
            row = out[b, i]
            for j in range(n):
                row[j] = -ai * col[j]
            row[i] += ai


@lazy_njit
def k_log_softmax_jac_stack(a, out):
    """``out[b] = I - 1 a[:, b]^T`` (rows identical but the diagonal); ``a = softmax(z)``."""
    n, B = a.shape
    one = a.dtype.type(1)
    col = np.empty(n, a.dtype)
    for b in range(B):
        for i in range(n):
            col[i] = a[i, b]
        for i in range(n):
            row = out[b, i]
            for j in range(n):
                row[j] = -col[j]
            row[i] += one


# ------------------------------------------------------------------ VJPs
@lazy_njit
def k_softmax_vjp_from_e(e, g):
    """``e <- a * (g - sum(g a))`` per column with ``a = e / sum(e)``.

    One pass reads ``e`` and ``g`` for both sums, one writes the result:
    ``(e / s) (g - (g . e) / s)``.
    """
    n, B = e.shape
    inv = 1.0 / col_sum(e)
    dot = (col_dot(g, e) * inv).astype(e.dtype)
    scale = inv.astype(e.dtype)
    if B == 1:
        ef, gf, c, d = e.ravel(), g.ravel(), scale[0], dot[0]
        for i in range(n):
            ef[i] *= c * (gf[i] - d)
        return
    for i in range(n):
        for b in range(B):
            e[i, b] *= scale[b] * (g[i, b] - dot[b])


@lazy_njit
def k_softmax_vjp(z, g, out):
    shift_exp(z, out)
    k_softmax_vjp_from_e(out, g)


@lazy_njit
def k_log_softmax_vjp_from_e(e, g):
    """``e <- g - a * sum(g)`` per column with ``a = e / sum(e)``."""
    n, B = e.shape
    t = (col_sum(g) / col_sum(e)).astype(e.dtype)
    if B == 1:
        ef, gf, c = e.ravel(), g.ravel(), t[0]
        for i in range(n):
            ef[i] = gf[i] - ef[i] * c
        return
    for i in range(n):
        for b in range(B):
            e[i, b] = g[i, b] - e[i, b] * t[b]


@lazy_njit
def k_log_softmax_vjp(z, g, out):
    shift_exp(z, out)
    k_log_softmax_vjp_from_e(out, g)
