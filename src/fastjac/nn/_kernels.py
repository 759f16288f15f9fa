"""Numba kernels for :mod:`fastjac.nn` (compiled lazily, on first call).

Layering, as in numba-stats: small scalar functions (``_s_*``) are called
from array loops (``k_*``); the thin Python wrappers in :mod:`._rules`
validate, convert dtypes, reshape to the canonical layout and allocate the
output with ``np.empty`` (Numba's own allocation of large arrays is much
slower than numpy's, so every array kernel writes into ``out``).

Canonical layout: a 2-D array ``(n, B)``, features on axis 0 and the batch
on axis 1 (the notebook's column-major convention).  Reductions run as
row-by-row passes with one accumulator per column, so a C-contiguous
``(n, B)`` array is streamed in memory order.

Every kernel is serial and ``nogil`` (options in :mod:`fastjac._jit`): no
parallel kernels, so calling fastjac from threads, executors or forked
workers can neither crash nor hang.  Constants are built from the input's
dtype so that float32 stays float32.  Nothing here imports Numba at module
import time.
"""
from __future__ import annotations

import math

import numpy as np

from .._jit import lazy_njit

# --------------------------------------------------------------------------
# scalar layer
# --------------------------------------------------------------------------


@lazy_njit
def _s_sigmoid(x, one):
    # ``one`` is 1 in x's dtype: a bare literal would promote float32 to float64.
    if x >= 0:
        return one / (one + math.exp(-x))
    e = math.exp(x)
    return e / (one + e)


@lazy_njit
def _s_relu_grad(x, g):
    return g if x > 0 else g - g  # 0 of g's type (a NaN g stays NaN like numpy's g*0)


@lazy_njit
def _s_leaky_relu_grad(x, g, alpha):
    return g if x > 0 else alpha * g


# --------------------------------------------------------------------------
# elementwise VJPs on flat (1-D, contiguous) arrays
# --------------------------------------------------------------------------


@lazy_njit
def k_sigmoid_vjp(z, g, out):
    one = z.dtype.type(1)
    for i in range(z.size):
        a = _s_sigmoid(z[i], one)
        out[i] = g[i] * a * (one - a)
    return out


@lazy_njit
def k_tanh_vjp(z, g, out):
    one = z.dtype.type(1)
    for i in range(z.size):
        a = math.tanh(z[i])
        out[i] = g[i] * (one - a * a)
    return out


@lazy_njit
def k_relu_vjp(z, g, out):
    for i in range(z.size):
        out[i] = _s_relu_grad(z[i], g[i])
    return out


@lazy_njit
def k_leaky_relu_vjp(z, g, alpha, out):
    for i in range(z.size):
        out[i] = _s_leaky_relu_grad(z[i], g[i], alpha)
    return out


# --------------------------------------------------------------------------
# softmax family, canonical (n, B) layout
# --------------------------------------------------------------------------


@lazy_njit
def k_softmax_jac_stack(a, out):
    """out[b] = diag(a[:, b]) - a[:, b] a[:, b]^T; a (n, B), out (B, n, n)."""
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
    return out


@lazy_njit
def k_log_softmax_jac_stack(a, out):
    """out[b] = I - 1 a[:, b]^T (rows identical but the diagonal); a = softmax."""
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
    return out


@lazy_njit
def k_softmax_vjp_from_a(a, g, out):
    """out = a * (g - sum_i g*a), per column; a = softmax(z)."""
    n, B = a.shape
    if B == 1:  # one column: keep the inner loop long
        d = 0.0
        for i in range(n):
            d += g[i, 0] * a[i, 0]
        dd = a.dtype.type(d)
        for i in range(n):
            out[i, 0] = a[i, 0] * (g[i, 0] - dd)
        return out
    acc = np.zeros(B, np.float64)  # float64 accumulation of the dot product
    for i in range(n):
        for b in range(B):
            acc[b] += g[i, b] * a[i, b]
    dot = acc.astype(a.dtype)
    for i in range(n):
        for b in range(B):
            out[i, b] = a[i, b] * (g[i, b] - dot[b])
    return out


@lazy_njit
def k_log_softmax_vjp_from_a(a, g, out):
    """out = g - a * sum_i g, per column; a = softmax(z)."""
    n, B = a.shape
    if B == 1:
        t = 0.0
        for i in range(n):
            t += g[i, 0]
        tt = a.dtype.type(t)
        for i in range(n):
            out[i, 0] = g[i, 0] - a[i, 0] * tt
        return out
    acc = np.zeros(B, np.float64)
    for i in range(n):
        for b in range(B):
            acc[b] += g[i, b]
    s = acc.astype(a.dtype)
    for i in range(n):
        for b in range(B):
            out[i, b] = g[i, b] - a[i, b] * s[b]
    return out


@lazy_njit
def k_softmax_xent(z, y, inv_m, floor_log, out):
    """Fused softmax + clipped mean cross-entropy + gradient.

    ``out`` (n, B) receives ``(softmax(z) - y) * inv_m``; returns the loss
    ``-sum(y * max(log_softmax(z), floor_log)) * inv_m`` (float64).  One
    ``exp`` per element and one ``log`` per column: the per-element ``log``
    of the unfused expression is never computed.
    """
    n, B = z.shape
    mx = np.empty(B, z.dtype)
    for b in range(B):
        mx[b] = z[0, b]
    for i in range(1, n):
        for b in range(B):
            if z[i, b] > mx[b]:
                mx[b] = z[i, b]
    s = np.zeros(B, np.float64)
    for i in range(n):
        for b in range(B):
            e = math.exp(z[i, b] - mx[b])
            out[i, b] = e
            s[b] += e
    logs = np.empty(B, np.float64)
    for b in range(B):
        logs[b] = math.log(s[b])
    inv = (1.0 / s).astype(z.dtype)
    scale = z.dtype.type(inv_m)
    loss = 0.0
    for i in range(n):
        for b in range(B):
            yi = y[i, b]
            if yi != 0:
                ls = (z[i, b] - mx[b]) - logs[b]
                if ls < floor_log:
                    ls = floor_log
                loss -= yi * ls
            out[i, b] = (out[i, b] * inv[b] - yi) * scale
    return loss * inv_m


@lazy_njit
def k_softmax(z, out):
    """Stable softmax per column of z (n, B), written to out."""
    n, B = z.shape
    mx = np.empty(B, z.dtype)
    for b in range(B):
        mx[b] = z[0, b]
    for i in range(1, n):
        for b in range(B):
            if z[i, b] > mx[b]:
                mx[b] = z[i, b]
    s = np.zeros(B, np.float64)
    for i in range(n):
        for b in range(B):
            e = math.exp(z[i, b] - mx[b])
            out[i, b] = e
            s[b] += e
    inv = (1.0 / s).astype(z.dtype)
    for i in range(n):
        for b in range(B):
            out[i, b] *= inv[b]
    return out


@lazy_njit
def k_softmax_xent_from_e(z, mx, e, y, inv_m, floor_log, out):
    """Second half of softmax + cross-entropy when numpy already computed
    ``e = exp(z - mx)`` with its SIMD ``exp`` (``out`` may be ``e``).

    Fuses the column sums, the per-column ``log``, the clipped loss and the
    gradient ``(e / sum(e) - y) * inv_m`` in two passes over memory.
    """
    n, B = z.shape
    s = np.zeros(B, np.float64)
    for i in range(n):
        for b in range(B):
            s[b] += e[i, b]
    logs = np.empty(B, np.float64)
    for b in range(B):
        logs[b] = math.log(s[b])
    inv = (1.0 / s).astype(z.dtype)
    scale = z.dtype.type(inv_m)
    loss = 0.0
    for i in range(n):
        for b in range(B):
            yi = y[i, b]
            if yi != 0:
                ls = (z[i, b] - mx[b]) - logs[b]
                if ls < floor_log:
                    ls = floor_log
                loss -= yi * ls
            out[i, b] = (e[i, b] * inv[b] - yi) * scale
    return loss * inv_m
