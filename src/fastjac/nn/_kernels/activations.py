"""Compiled kernels of the elementwise activations.

Two layers, as in numba-stats: scalar functions (``_s_*``) called from array
loops (``k_*``).  Every array kernel takes arrays of any shape and layout,
walks them through ``ravel()`` (a view for C-contiguous input, a copy
otherwise) and writes into ``out``, which the caller allocates C-contiguous
with ``np.empty`` (numpy's allocator is faster than Numba's for large
arrays).  Kernels return nothing: boxing a returned array costs about as
much as the loop over a few hundred elements.

A cotangent ``g`` of None means "the derivative itself" (``g = 1``): Numba
compiles that case separately and prunes the multiplication (``_s_times``).

``*_from_*`` kernels finish, in place, what numpy started with its
SIMD-vectorised transcendental (Numba calls the scalar libm):
``e = exp(-|z|)`` for the sigmoid, ``a = tanh(z)`` for tanh.  In place, not
into a separate ``out`` that may alias the input: LLVM vectorises a loop
only when its runtime overlap check passes, so an aliased ``out`` halves the
speed.

Constants are built from the input's dtype so that float32 stays float32.
Constants come first (leaky ReLU's slope, the ``kind`` of a smooth
activation: ``k(alpha, z, g, out)``) so that a rule can bind them with
``functools.partial``.
"""
from __future__ import annotations

import math

from ..._jit import lazy_njit

__all__ = ["SIGMOID", "TANH", "k_leaky_relu", "k_neg_abs", "k_piecewise_grad", "k_relu_grad", "k_sigmoid",
           "k_sigmoid_from_e", "k_smooth_grad", "k_smooth_grad_from"]


# ------------------------------------------------------------------ scalar layer
@lazy_njit
def _s_sigmoid_from_e(x, e, one):
    # e = exp(-|x|) <= 1 never overflows; both branches keep full relative
    # accuracy (1 / (1 + exp(-x)) alone loses it for very negative x).
    return one / (one + e) if x >= 0 else e / (one + e)


@lazy_njit
def _s_sigmoid_d_from_e(e, one):
    # sigma'(x) = sigma(|x|) (1 - sigma(|x|)) = e / (1 + e)^2: no cancellation,
    # unlike a (1 - a) when a rounds to 1.
    d = one + e
    return e / (d * d)


@lazy_njit
def _s_times(g, gi, d):
    # g None (Numba compiles that case apart and drops the branch): the derivative itself
    return d if g is None else gi * d


@lazy_njit
def _flat_g(g, zf):
    # g's flat view; when g is None, any array of zf's type (never read)
    return zf if g is None else g.ravel()


# ------------------------------------------------------------------ forward
@lazy_njit
def k_sigmoid(z, out):
    zf, of = z.ravel(), out.ravel()
    one = zf.dtype.type(1)
    for i in range(zf.size):
        x = zf[i]
        of[i] = _s_sigmoid_from_e(x, math.exp(-abs(x)), one)


@lazy_njit
def k_neg_abs(z, out):
    """``out = -|z|``: one pass where numpy needs two (``abs``, ``negative``)."""
    zf, of = z.ravel(), out.ravel()
    for i in range(zf.size):
        of[i] = -abs(zf[i])


@lazy_njit
def k_sigmoid_from_e(z, e):
    """``e <- sigmoid(z)`` given ``e = exp(-|z|)`` (C-contiguous)."""
    zf, ef = z.ravel(), e.ravel()
    one = zf.dtype.type(1)
    for i in range(zf.size):
        ef[i] = _s_sigmoid_from_e(zf[i], ef[i], one)


@lazy_njit
def k_leaky_relu(alpha, z, out):
    zf, of = z.ravel(), out.ravel()
    for i in range(zf.size):
        x = zf[i]
        of[i] = x if x > 0 else alpha * x


# ------------------------------------------------------------------ derivative times g
#: ``kind`` of the smooth activations' kernels (a run-time constant of the
#: loop, which LLVM unswitches).
SIGMOID, TANH = 0, 1


@lazy_njit
def k_smooth_grad(kind, z, g, out):
    """``out = g * f'(z)`` for ``f`` the sigmoid or tanh (``kind``), everything compiled."""
    zf, of = z.ravel(), out.ravel()
    gf = _flat_g(g, zf)
    one = zf.dtype.type(1)
    if kind == SIGMOID:
        for i in range(zf.size):
            of[i] = _s_times(g, gf[i], _s_sigmoid_d_from_e(math.exp(-abs(zf[i])), one))
    else:
        for i in range(zf.size):
            a = math.tanh(zf[i])
            of[i] = _s_times(g, gf[i], one - a * a)


@lazy_njit
def k_smooth_grad_from(kind, x, g):
    """``x <- g * f'(z)`` given numpy's ``x``: ``exp(-|z|)`` (sigmoid) or ``tanh(z)`` (C-contiguous).

    One loop per ``kind``: a select inside one loop would compute the
    sigmoid's division for tanh too (LLVM if-converts it and vectorises).
    """
    xf = x.ravel()
    gf = _flat_g(g, xf)
    one = xf.dtype.type(1)
    if kind == SIGMOID:
        for i in range(xf.size):
            xf[i] = _s_times(g, gf[i], _s_sigmoid_d_from_e(xf[i], one))
    else:
        for i in range(xf.size):
            xf[i] = _s_times(g, gf[i], one - xf[i] * xf[i])


@lazy_njit
def k_piecewise_grad(alpha, z, g, out):
    """``out = g`` where ``z > 0``, else ``alpha g``: leaky ReLU, and ReLU with ``alpha = 0``.

    ``0 * g`` keeps numpy's ``g * (z > 0)`` semantics: NaN for a NaN or inf ``g``.
    """
    zf, of = z.ravel(), out.ravel()
    gf = _flat_g(g, zf)
    one = zf.dtype.type(1)
    a = zf.dtype.type(alpha)
    for i in range(zf.size):
        w = _s_times(g, gf[i], one)
        of[i] = w if zf[i] > 0 else a * w


@lazy_njit
def k_relu_grad(z, g, out):
    """ReLU's: :func:`k_piecewise_grad` with ``alpha = 0``, without a bound argument
    (``functools.partial`` and one more argument to type cost ~0.15 us a call)."""
    k_piecewise_grad(0.0, z, g, out)
