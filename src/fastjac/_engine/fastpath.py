"""The warm path of a small problem: one prepared block, one call of ``f``.

Most checks are small (a test suite, the notebook's 3-12 elements), and
there the general pipeline's bookkeeping (validating options, building
blocks, combining, scattering) costs more than ``f`` itself.  Once a plan
has decided how ``f`` batches and every direction fits in one block, the
whole run is a handful of numpy operations around one call of ``f``, all
precomputed here: the stack buffer and its read-only view, the views of the
entries each offset moves, and the stencil weights.  A :class:`FastPath`
is made by the pipeline after a full run and kept on the plan.

Anything unusual (another shape or dtype, a non-finite ``x``, an output of
another shape or dtype, a nested or concurrent call) makes
:meth:`FastPath.__call__` return None, and the caller takes the general
path, which re-validates and re-plans as needed.
"""
from __future__ import annotations

import math
import threading

import numpy as np

from .._memo import FunctionMemo
from ..steps import relative_step
from .buffers import readonly
from .combine import combine, split_weights
from .directions import SparseDirections
from .strategies import Task, evaluate_loop

__all__ = ["FastPath", "FAST_MAX_BYTES", "lookup", "remember"]

#: Largest stack (all points of the problem) served by a fast path: beyond
#: it the pipeline's chunking matters more than its bookkeeping.
FAST_MAX_BYTES = 1 << 18


class FastPath:
    """One precomputed block covering every coordinate, for one plan.

    Parameters
    ----------
    f : callable
        The function as the engine calls it.
    x_shape, dtype :
        The layout of ``x`` this path serves.
    out_shape, out_dtype :
        What ``f`` returned per point when the plan was made.
    layout : {'leading', 'trailing', 'points'}
        How ``f`` batches (``'points'``: it does not; the loop strategy).
    offsets : tuple of float
        The stencil's nonzero offsets.
    W, centers :
        The stencil's weights, as :func:`.combine.split_weights` gives them.
    rel : float
        Relative step ``EPS**(1/(p+1))`` of the step rule.
    center : bool
        Whether the last point of the stack is ``x`` itself (a guard).
    """

    def __init__(self, f, x_shape, dtype, out_shape, out_dtype, layout, offsets, W, centers,
                 rel, center=False, result_dtype=np.float64):
        n = int(np.prod(x_shape, dtype=np.int64))
        S = len(offsets)
        rows = S * n + bool(center)
        self.f, self.x_shape, self.dtype, self.n = f, tuple(x_shape), np.dtype(dtype), n
        self.out_shape, self.out_dtype = tuple(out_shape), np.dtype(out_dtype)
        self.m = int(np.prod(out_shape, dtype=np.int64))
        self.layout, self.rows, self.center = layout, rows, center
        self.offsets, self.W, self.centers, self.rel = offsets, W, centers, rel
        # The central difference's form in .combine: one subtraction, one weight.
        self.central = S == 2 and W.shape[0] == 1 and W[0, 0] == -W[0, 1] and centers[0] == 0
        self.w1 = np.dtype(dtype).type(W[0, 1]) if self.central else None
        if layout == "points":
            # f takes one point at a time: the loop strategy's own code, on a
            # block of every coordinate prepared once.
            self.task = Task(f, np.empty(n, self.dtype), self.x_shape, self.out_shape,
                             np.dtype(result_dtype), strategy="loop")
            self.indices = np.arange(n)
            self.indptr = np.arange(n + 1)
        elif layout == "leading":
            shape = (rows, n)
            self.stack = np.empty(shape, dtype=self.dtype)
            flat = self.stack.reshape(-1)
            # The entries offset s moves: (s*n + j, j) in leading, (j, s*n + j) in trailing.
            self.moved = [flat[s * n * n::n + 1][:n] for s in range(S)]
            self.batch = readonly(self.stack).reshape((rows,) + self.x_shape)
            self.want = (rows,) + self.out_shape
        else:
            self.stack = np.empty((n, rows), dtype=self.dtype)
            flat = self.stack.reshape(-1)
            self.moved = [flat[s * n::rows + 1][:n] for s in range(S)]
            self.batch = readonly(self.stack).reshape(self.x_shape + (rows,))
            self.want = self.out_shape + (rows,)
        self.h = np.empty(n, dtype=self.dtype)
        self.owner = threading.get_ident()
        self.busy = False

    def __call__(self, x):
        """``(JT, f_center, h)``, ``JT`` of shape ``(n, m)``, or None for the general path.

        ``x`` is the caller's array, read and never written.
        """
        if (type(x) is not np.ndarray or x.dtype != self.dtype or x.shape != self.x_shape
                or self.busy or threading.get_ident() != self.owner):
            return None
        xf = x.reshape(-1)
        if not math.isfinite(xf.dot(xf)):
            return None  # NaN, inf or overflow: the general path says which
        h = self.h
        np.abs(xf, out=h)
        np.maximum(h, 1.0, out=h)
        h *= self.rel
        taken = xf + h            # the step actually taken, (x + h) - x
        taken -= xf
        if self.layout == "points":
            return self._points(xf, taken)
        stack = self.stack
        stack[...] = xf if self.layout == "leading" else xf[:, None]
        for view, c in zip(self.moved, self.offsets):
            if c == 1:
                np.add(xf, taken, out=view)
            elif c == -1:
                np.subtract(xf, taken, out=view)
            else:
                np.add(xf, taken * c, out=view)
        # The stack is this path's own (not the per-thread pool), so a fastjac
        # call inside f cannot touch it; ``busy`` sends a recursive call to the
        # general path.
        self.busy = True
        try:
            Y = self.f(self.batch)
        finally:
            self.busy = False
        if type(Y) is not np.ndarray or Y.shape != self.want or Y.dtype != self.out_dtype:
            return None
        n, m, S = self.n, self.m, len(self.offsets)
        if self.layout == "leading":
            Y2 = Y.reshape(self.rows, m)
            F = Y2[:S * n].reshape(S, n, m)
            center = Y2[-1].copy() if self.center else None
        else:
            Y2 = Y.reshape(m, self.rows)
            F = Y2[:, :S * n].reshape(m, S, n).transpose(1, 2, 0)
            center = Y2[:, -1].copy() if self.center else None
        return self._combined(F, center, taken)

    def _points(self, xf, taken):
        task = self.task
        task.x0 = xf
        block = SparseDirections(self.indptr, self.indices, taken, self.indices, 0)
        self.busy = True
        try:
            F, center = evaluate_loop(task, block, self.offsets, self.center)
        except (TypeError, ValueError):
            return None  # f changed (another shape or dtype): the general path re-plans
        finally:
            self.busy = False
            task.x0 = None
        return self._combined(F, None if center is None else center.copy(), taken)

    def _combined(self, F, center, taken):
        # The pipeline's own combination and scaling, so the result is bitwise
        # the general path's: D = F1 - F0, times the weight, times 1/h.
        if self.central:
            D = np.subtract(F[1], F[0])
            if self.w1 != 1:
                D *= self.w1
        else:
            D = combine(F, self.W, self.centers, None)[0]
        inv = (1.0 / taken)[:, None]
        if D.dtype == np.result_type(D.dtype, inv.dtype):
            D *= inv
        else:
            D = D * inv  # float32 outputs of a float64 x: J is float64, as in the pipeline
        return D, center, taken


_FAST = FunctionMemo()


def fast_key(x, method, order, vectorized, center):
    return (x.shape, x.dtype.str, method, order, vectorized, center)


def lookup(f, x, method, order, vectorized, center=False):
    """The fast path for this call, or None (then take the general path)."""
    if type(x) is not np.ndarray:
        return None
    return _FAST.get(f, fast_key(x, method, order, vectorized, center))


def remember(prep, method, order, center=False):
    """Keep a fast path for the plan of a single-block in-process dense run."""
    task, plan = prep.task, prep.plan
    strategy = plan.strategy
    if (strategy not in ("vectorized", "vectorized-trailing", "loop") or prep.executor is not None
            or prep.max_memory is not None or prep.spec is not None or task.writable
            or task.serialize or prep.stencil.complex_step or prep.x0.dtype.kind != "f"):
        return
    S = prep.stencil.evaluations_per_column
    if (S * prep.n + center) * (prep.n + prep.m) * prep.x0.itemsize > FAST_MAX_BYTES:
        return
    offsets = prep.stencil.nonzero[0]
    W, centers = split_weights(prep.stencil.offsets, [prep.stencil.weights])
    if any(centers):
        return  # one-sided stencils need f(x)
    layout = {"vectorized": "leading", "vectorized-trailing": "trailing", "loop": "points"}[strategy]
    fp = FastPath(task.f, prep.x_shape, prep.x0.dtype, prep.out_shape, np.dtype(plan.out_dtype),
                  layout, offsets, W, centers, relative_step(prep.stencil, prep.eps), center,
                  prep.dtype)
    x_proxy = np.empty(prep.x_shape, prep.x0.dtype)
    _FAST.set(prep.f, fast_key(x_proxy, method, order, prep.vectorized, center), fp)
