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
from dataclasses import dataclass

import numpy as np

from .._memo import FunctionMemo
from ..steps import relative_step
from .buffers import readonly
from .combine import combine, split_weights
from .memory import policy_key
from .strategies import POINTWISE_ROW_BYTES

__all__ = ["FastPath", "FAST_MAX_BYTES", "lookup", "remember"]

#: Largest stack (all points of the problem) served by a fast path: beyond
#: it the pipeline's chunking matters more than its bookkeeping.
FAST_MAX_BYTES = 1 << 18
#: Largest J served by a multi-block fast path, and the slowest general run
#: it replaces.
FAST_MAX_J_BYTES = 32 << 20
#: Stacks up to this many entries are written as ``x + C * h`` (see small_stack).
SMALL_STACK_ENTRIES = 4096
#: Inputs up to this many (float64) take the step rule in Python floats.
TINY_N = 16
FAST_MAX_SECONDS = 0.5


class FastPath:
    """Precomputed blocks covering every coordinate, for one plan.

    Parameters
    ----------
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
        Whether the first block also evaluates ``x`` itself (a guard).
    block : int, optional
        Directions per block, as the pipeline chose them (default: all): the
        same blocks give the same batches, so ``f``'s results (a BLAS
        product's rounding depends on the batch size) are bitwise the
        pipeline's.
    """

    def __init__(self, x_shape, dtype, out_shape, out_dtype, layout, offsets, W, centers,
                 rel, center=False, result_dtype=np.float64, block=None):
        n = int(np.prod(x_shape, dtype=np.int64))
        S = len(offsets)
        # No reference to f: the path is filed under f in a table weak in f,
        # and a value that held f would keep it (and its closure) alive forever.
        self.x_shape, self.dtype, self.n = tuple(x_shape), np.dtype(dtype), n
        self.out_shape, self.out_dtype = tuple(out_shape), np.dtype(out_dtype)
        self.m = int(np.prod(out_shape, dtype=np.int64))
        self.layout, self.rows, self.center = layout, S * n + bool(center), center
        self.offsets, self.W, self.centers, self.rel = offsets, W, centers, rel
        self.result_dtype = np.dtype(result_dtype)
        # The central difference's form in .combine: one subtraction, one weight.
        self.central = S == 2 and W.shape[0] == 1 and W[0, 0] == -W[0, 1] and centers[0] == 0
        self.w1 = self.out_dtype.type(W[0, 1]) if self.central else None
        self.evaluated = 0  # points evaluated by the last call (counted on a miss too)
        if layout == "points":
            # f takes one point at a time: one buffer for the point, one for
            # every value, and the offsets as a column (see _points).
            self.point = np.empty(n, self.dtype)
            self.point_view = readonly(self.point).reshape(self.x_shape)
            # Values in J's dtype, as the loop strategy stores them (a float32
            # output of a float64 x is differenced in float64).
            self.values = np.empty((S * n + bool(center),) + self.out_shape, self.result_dtype)
            self.coffsets = np.array([self.dtype.type(c) for c in offsets])[:, None]
            # A scalar loss may come back as a numpy scalar or a Python float.
            self.scalars = ((self.out_dtype.type, float) if self.out_dtype == np.float64
                            else (self.out_dtype.type,)) if self.out_shape == () else ()
            self.blocks = []
        else:
            b = n if block is None else max(1, min(int(block), n))
            stacks = {}  # one stack per block size, shared by the blocks of that size
            self.blocks = [make_block(layout, self.x_shape, self.out_shape, offsets, self.dtype,
                                      stacks, lo, min(b, n - lo), center and lo == 0)
                           for lo in range(0, n, b)]
            self._stacks = stacks
        self.h = np.empty(n, dtype=self.dtype)
        # Constants as 0-d arrays of the working dtype: numpy converts a Python
        # float on every call, which on tiny arrays costs a third of the ufunc.
        self.one = np.array(1.0, dtype=self.dtype)
        self.rel0 = np.array(rel, dtype=self.dtype)
        self.w10 = np.array(self.w1) if self.central else None
        # A few float64 inputs: the step rule in Python floats, which round as
        # numpy's float64 does (IEEE double) at a fraction of a ufunc call each.
        self.tiny = self.dtype == np.float64 and n <= TINY_N and self.central and \
            tuple(offsets) == (-1.0, 1.0)
        self.scalar_loss = (layout == "points" and self.out_shape == ()
                            and self.result_dtype == np.float64 and self.out_dtype == np.float64)
        self.small = None
        if (layout == "leading" and len(self.blocks) == 1 and self.central
                and self.rows * n <= SMALL_STACK_ENTRIES):
            self.small = small_stack(self.offsets, self.rows, n, self.dtype, self.blocks[0])
        self.owner = threading.get_ident()
        self.busy = False

    def _tiny(self, f, xf):
        """The step rule ``h = rel max(1, |x|)``, ``(x + h) - x``, in Python floats."""
        xs = xf.tolist()
        taken = tiny_steps(xs, self.rel)
        if taken is None:
            return None  # NaN or inf: the general path says which
        if self.scalar_loss:
            return self._scalar_loss(f, xf, xs, taken)
        return self._dispatch(f, xf, np.array(taken))

    def _scalar_loss(self, f, xf, xs, taken):
        """A scalar loss evaluated point by point, in Python floats end to end:
        ``((f(x + h) - f(x - h)) * w) * (1 / h)``, the pipeline's operations in its
        order, each rounded as numpy rounds float64."""
        point, view, w = self.point, self.point_view, float(self.w1)
        scalars = self.scalars
        point[...] = xf
        J = []
        self.busy = True
        try:
            for j, v in enumerate(xs):
                t = taken[j]
                point[j] = v - t
                lo = f(view)
                point[j] = v + t
                hi = f(view)
                point[j] = v
                if type(lo) not in scalars or type(hi) not in scalars:
                    return None  # arrays, other dtypes: the general path
                self.evaluated += 2
                J.append(((float(hi) - float(lo)) * w) * (1.0 / t))
            center = None
            if self.center:
                y = f(view)
                self.evaluated += 1
                if type(y) not in scalars:
                    return None
                center = np.array([float(y)])
        except Exception:
            return None  # the general path calls f again and names what went wrong
        finally:
            self.busy = False
        return np.array(J).reshape(len(xs), 1), center, np.array(taken)

    def _small(self, f, xf, taken):
        C, P, stack, batch, want, inv, inv_col = self.small
        np.multiply(C, taken, out=P)
        np.add(xf, P, out=stack)
        self.busy = True
        try:
            Y = f(batch)
        finally:
            self.busy = False
        self.evaluated = self.rows
        if type(Y) is not np.ndarray or Y.shape != want or Y.dtype != self.out_dtype:
            return None
        n, m = self.n, self.m
        if self.center:
            Y2 = Y.reshape(self.rows, m)
            F, center = Y2[:2 * n].reshape(2, n, m), Y2[-1].copy()
        else:
            F, center = Y.reshape(2, n, m), None
        D = np.subtract(F[1], F[0])
        if self.w1 != 1:
            np.multiply(D, self.w10, out=D)
        np.reciprocal(taken, out=inv)  # 1/h, bitwise the pipeline's 1.0 / h
        if D.dtype == self.result_dtype:
            np.multiply(D, inv_col, out=D)
        else:
            D = D * inv_col
        return D, center, taken

    def __call__(self, x, f):
        """``(JT, f_center, h)``, ``JT`` of shape ``(n, m)``, or None for the general path.

        ``x`` is the caller's array, read and never written; ``f`` the function
        this path was filed under.
        """
        self.evaluated = 0
        if (type(x) is not np.ndarray or x.dtype != self.dtype or x.shape != self.x_shape
                or self.busy or threading.get_ident() != self.owner):
            return None
        xf = x.reshape(-1)
        if self.tiny:
            return self._tiny(f, xf)
        if not math.isfinite(xf.dot(xf)):
            return None  # NaN, inf or overflow: the general path says which
        h = self.h
        np.abs(xf, out=h)
        np.maximum(h, self.one, out=h)
        np.multiply(h, self.rel0, out=h)
        taken = xf + h            # the step actually taken, (x + h) - x
        np.subtract(taken, xf, out=taken)
        return self._dispatch(f, xf, taken)

    def _dispatch(self, f, xf, taken):
        """The steps are taken: the evaluation this path's layout calls for."""
        if self.small is not None:
            return self._small(f, xf, taken)
        if self.layout == "points":
            return self._points(f, xf, taken)
        # The stacks are this path's own (not the per-thread pool), so a fastjac
        # call inside f cannot touch them; ``busy`` sends a recursive call to
        # the general path.
        self.busy = True
        try:
            return self._blocks(f, xf, taken)
        finally:
            self.busy = False

    def _blocks(self, f, xf, taken):
        n, m, S = self.n, self.m, len(self.offsets)
        leading = self.layout == "leading"
        for stack in self._stacks.values():
            stack[...] = xf if leading else xf[:, None]
        single = len(self.blocks) == 1
        if not single:
            JT = np.empty((n, m), dtype=self.result_dtype)
            inv = 1.0 / taken
        center = None
        for blk in self.blocks:
            lo, k = blk.lo, blk.k
            base, step = xf[lo:lo + k], taken[lo:lo + k]
            for view, c in zip(blk.moved, self.offsets):
                if c == 1:
                    np.add(base, step, out=view)
                elif c == -1:
                    np.subtract(base, step, out=view)
                else:
                    np.add(base, step * c, out=view)
            Y = f(blk.batch)
            self.evaluated += blk.rows
            if type(Y) is not np.ndarray or Y.shape != blk.want or Y.dtype != self.out_dtype:
                return None
            if leading:
                Y2 = Y.reshape(blk.rows, m)
                F = Y2[:S * k].reshape(S, k, m)
                if blk.center:
                    center = Y2[-1].copy()
            else:
                Y2 = Y.reshape(m, blk.rows)
                F = Y2[:, :S * k].reshape(m, S, k).transpose(1, 2, 0)
                if blk.center:
                    center = Y2[:, -1].copy()
            if single:
                return self._combined(F, center, taken)
            self._into(F, inv[lo:lo + k, None], JT[lo:lo + k])
            for view in blk.moved:  # the stack holds x again for the next block of its size
                view[...] = base
        return JT, center, taken

    def _difference(self, F, fresh=False):
        """The pipeline's own combination, so the result is bitwise the general
        path's: ``D = F1 - F0`` times the weight for a central difference."""
        if not self.central:
            return combine(F, self.W, self.centers, None, fresh=fresh)[0]
        D = np.subtract(F[1], F[0])
        if self.w1 != 1:
            D *= self.w1
        return D

    def _into(self, F, inv, out):
        """The pipeline's combination and scaling of one block, written to ``out``."""
        np.multiply(self._difference(F, fresh=True), inv, out=out)

    def _points(self, f, xf, taken):
        """The loop strategy's values, bitwise: ``x0 + c h`` rounded as the stack
        rounds it, one item assignment and one call of ``f`` per point.  Any
        output that is not an array (or scalar) of the plan's shape and dtype,
        and any exception, sends the call to the general path, which explains it."""
        S, n = len(self.offsets), self.n
        point, view, values = self.point, self.point_view, self.values
        point[...] = xf
        moved = (xf[None, :] + taken[None, :] * self.coffsets).tolist()
        originals = xf.tolist()
        want, dtype, scalars = self.out_shape, self.out_dtype, self.scalars
        self.busy = True
        try:
            for j in range(n):
                for s in range(S):
                    point[j] = moved[s][j]
                    y = f(view)
                    if type(y) is np.ndarray:
                        if y.shape != want or y.dtype != dtype:
                            return None
                    elif type(y) not in scalars:
                        return None
                    values[s * n + j] = y  # stored before the point moves: y may be a view
                    self.evaluated += 1
                point[j] = originals[j]
            center = None
            if self.center:
                y = f(view)
                self.evaluated += 1
                if not (type(y) is np.ndarray and y.shape == want and y.dtype == dtype) and \
                        type(y) not in scalars:
                    return None
                values[S * n] = y
                center = values[S * n].reshape(-1).copy()
        except Exception:
            return None  # the general path calls f again and names what went wrong
        finally:
            self.busy = False
        F = values[:S * n].reshape(S, n, self.m)
        return self._combined(F, center, taken)

    def _combined(self, F, center, taken):
        # The pipeline's combination and scaling: D, times 1/h.
        D = self._difference(F)
        inv = (1.0 / taken)[:, None]
        if D.dtype == self.result_dtype:
            D *= inv
        else:
            D = D * inv  # float32 outputs of a float64 x: J is float64, as in the pipeline
        return D, center, taken


@dataclass
class _Block:
    lo: int
    k: int
    rows: int
    stack: np.ndarray
    moved: list
    batch: np.ndarray
    want: tuple
    center: bool


def tiny_steps(xs, rel):
    """The step rule ``h = rel max(1, |x|)`` and the step taken, ``(x + h) - x``,
    in Python floats (they round as numpy's float64 does, IEEE double, at a
    fraction of a ufunc call each); None if a value is NaN or inf."""
    taken = []
    for v in xs:
        a = abs(v)
        if not a < math.inf:
            return None
        h = rel * (a if a > 1.0 else 1.0)
        taken.append((v + h) - v)
    return taken


def small_stack(offsets, rows, n, dtype, blk):
    """For a small stack, the offsets as one matrix: ``stack = x + C * h``.

    ``C`` holds ``c_s`` where offset ``s`` moves coordinate ``j`` and -0.0
    elsewhere (``x + -0.0`` is ``x`` bitwise, signed zeros included), so two
    ufunc calls write the whole stack where a fill and one call per offset
    took ``S + 1``: on the notebook's 3-12 inputs each call costs as much
    as ``f``.  The values are those of the general path's ``x + c h``.
    """
    C = np.full((rows, n), -0.0, dtype=dtype)
    for s, c in enumerate(offsets):
        C[s * n + np.arange(n), np.arange(n)] = c
    inv = np.empty(n, dtype=dtype)
    return C, np.empty_like(C), blk.stack, blk.batch, blk.want, inv, inv[:, None]


def make_block(layout, x_shape, out_shape, offsets, dtype, stacks, lo, k, center):
    """One block: its stack (from ``stacks``, shared by the blocks of the same
    size), the entries each offset moves, and the batch ``f`` sees."""
    S, n = len(offsets), int(np.prod(x_shape, dtype=np.int64))
    rows = S * k + bool(center)
    if rows not in stacks:
        stacks[rows] = np.empty((rows, n) if layout == "leading" else (n, rows), dtype=dtype)
    stack = stacks[rows]
    flat = stack.reshape(-1)
    if layout == "leading":
        # Offset s moves entry (s*k + i, lo + i): start s*k*n + lo, stride n + 1.
        moved = [flat[s * k * n + lo::n + 1][:k] for s in range(S)]
        batch = readonly(stack).reshape((rows,) + x_shape)
        want = (rows,) + out_shape
    else:
        # Offset s moves entry (lo + i, s*k + i): start lo*rows + s*k, stride rows + 1.
        moved = [flat[lo * rows + s * k::rows + 1][:k] for s in range(S)]
        batch = readonly(stack).reshape(x_shape + (rows,))
        want = out_shape + (rows,)
    return _Block(lo, k, rows, stack, moved, batch, want, center)


_FAST = FunctionMemo()


def fast_key(x, method, order, vectorized, center):
    return (x.shape, x.dtype, method, order, vectorized, center, policy_key())


def lookup(f, x, method, order, vectorized, center=False):
    """The fast path for this call, or None (then take the general path)."""
    if type(x) is not np.ndarray:
        return None
    return _FAST.get(f, fast_key(x, method, order, vectorized, center))


def remember(prep, method, order, center=False, stats=None):
    """Keep a fast path for the plan of an in-process dense run.

    ``stats`` is the run's :class:`~.pipeline.RunStats`: the fast path takes
    its block size (the one later runs settle on, after chunk-size trials),
    and is only kept when that size is settled, ``J`` is at most :data:`FAST_MAX_J_BYTES`
    and the run took under :data:`FAST_MAX_SECONDS` (beyond, the
    pipeline's bookkeeping is noise and its progress bar matters).  Without
    ``stats``, only a problem whose whole stack fits in
    :data:`FAST_MAX_BYTES` (one block) is kept.
    """
    task, plan = prep.task, prep.plan
    strategy = plan.strategy
    if (strategy not in ("vectorized", "vectorized-trailing", "loop") or prep.executor is not None
            or prep.max_memory is not None or prep.spec is not None or task.writable
            or task.serialize or prep.stencil.complex_step or prep.x0.dtype.kind != "f"):
        return
    S = prep.stencil.evaluations_per_column
    itemsize = prep.x0.itemsize
    block = None
    if stats is None:
        if (S * prep.n + center) * (prep.n + prep.m) * itemsize > FAST_MAX_BYTES:
            return
    else:
        if (not stats.settled or stats.seconds > FAST_MAX_SECONDS
                or prep.n * prep.m * prep.dtype.itemsize > FAST_MAX_J_BYTES):
            return
        if strategy != "loop":
            if prep.n * itemsize >= POINTWISE_ROW_BYTES:
                return  # the pipeline evaluates such large points one at a time
            block = stats.block_size
    offsets = prep.stencil.nonzero[0]
    W, centers = split_weights(prep.stencil.offsets, [prep.stencil.weights])
    if any(centers):
        return  # one-sided stencils need f(x)
    layout = {"vectorized": "leading", "vectorized-trailing": "trailing", "loop": "points"}[strategy]
    fp = FastPath(prep.x_shape, prep.x0.dtype, prep.out_shape, np.dtype(plan.out_dtype),
                  layout, offsets, W, centers, relative_step(prep.stencil, prep.eps), center,
                  prep.dtype, block=block)
    x_proxy = np.empty(prep.x_shape, prep.x0.dtype)
    _FAST.set(prep.f, fast_key(x_proxy, method, order, prep.vectorized, center), fp)
