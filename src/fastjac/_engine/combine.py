"""Combining a block's evaluations into differences: ``D = W F + c f(x)``.

A stencil (or any set of weight vectors over the evaluated offsets) turns
the values ``F[s, i] = f(x0 + c_s d_i)`` into estimates ``D[e, i]`` of
``h * J d_i``; the weight of ``f(x)`` itself (one-sided stencils) is added
from the caller's ``f(x)``.
"""
from __future__ import annotations

import numpy as np

from .buffers import stack_buffer

__all__ = ["combine", "split_weights"]

_CACHE: dict = {}


def split_weights(offsets, combos):
    """``(W, centers)``: weights of the nonzero offsets, and of ``f(x)``, per estimate.

    ``combos`` are weight vectors over ``offsets`` (the stencil's, zero included).
    """
    key = (tuple(offsets), tuple(tuple(r) for r in combos))
    got = _CACHE.get(key)
    if got is None:
        W = np.asarray([[w for c, w in zip(offsets, row) if c != 0] for row in combos], float)
        centers = tuple(float(sum(w for c, w in zip(offsets, row) if c == 0)) for row in combos)
        got = _CACHE[key] = (W, centers)
    return got


def combine(F, W, centers, fx_flat, fresh=False):
    """``D[e] = centers[e] f(x) + sum_s W[e, s] F[s]``, shape ``(E, b, m)``.

    In process the central difference goes to a per-thread scratch buffer (a
    fresh one per block would page-fault each time): the caller consumes it
    before the next block.  ``fresh=True`` (executor tasks) returns a new array.
    """
    S, b, m = F.shape
    if S == 2 and W.shape[0] == 1 and W[0, 0] == -W[0, 1] and centers[0] == 0:
        if fresh:
            D = np.empty((b, m), F.dtype)
        else:
            D = stack_buffer(b * m * F.dtype.itemsize, F.dtype, "combine").reshape(b, m)
        np.subtract(F[1], F[0], out=D)  # central differences: one pass, no temporaries
        if W[0, 1] != 1:
            D *= F.dtype.type(W[0, 1])
        return D[None]
    D = np.tensordot(W.astype(F.dtype), F, axes=(1, 0))
    for e, c in enumerate(centers):
        if c:
            D[e] += F.dtype.type(c) * fx_flat
    return D
