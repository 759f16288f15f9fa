"""Evaluation strategies: how ``f`` is called on a block of perturbed points.

A strategy is a record in :data:`STRATEGIES`: a name, whether it evaluates
a whole block per call (``batched``), and ``evaluate(task, block, offsets,
center) -> (F, f_center)`` with ``F[s, i] = f(x0 + c_s d_i)`` flattened to
the output size ``m`` (a view the caller consumes before the next block)
and ``f_center = f(x0)`` from the same call when ``center`` is asked for.

``"vectorized"``
    One call of ``f`` on a ``(rows, *x.shape)`` stack (leading batch axis).
``"vectorized-trailing"``
    One call on a ``(*x.shape, rows)`` stack: the points are extra columns,
    as the notebook's column-major functions expect.
``"loop"``
    One call per point on a single reused buffer.
``"numba"``
    A jitted driver calls a jitted ``f`` per point (see :mod:`.numba_driver`).

Two properties of ``f``, learned at run time and kept on the task:
``writable`` (``f`` rejects read-only arrays, as a Cython memoryview or an
eagerly typed ``@njit`` does: it gets writable copies, and every call is
verified not to have written into them) and ``serialize`` (``f`` returns
the same buffer on every call, so threads must not interleave a call with
the copy of its result).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .._validate import annotate, describe
from .buffers import call_nested, enter_nested, fill_stack, leave_nested, readonly, stack_buffer
from .directions import DenseDirections

__all__ = ["Task", "Strategy", "STRATEGIES", "as_output", "call_f", "is_readonly_rejection",
           "modified_input_error", "BatchShapeError", "POINTWISE_ROW_BYTES"]

# One lock per process: an f that reuses its output buffer is called (and
# its result copied) by one thread at a time.
_F_LOCK = threading.RLock()

#: Points at least this large (bytes) are evaluated one at a time even when f
#: batches (see Task.evaluate): ``benchmarks/bench_check.py`` measures a loss
#: of 1e5 parameters.
POINTWISE_ROW_BYTES = 1 << 18


class BatchShapeError(ValueError):
    """A batched call returned the wrong shape (the plan may be stale)."""

    def __init__(self, message, got=None, want=None):
        super().__init__(message)
        self.got, self.want = got, want


def as_output(y, expected_shape=None, where="", complex_ok=False) -> np.ndarray:
    """Validate one output of ``f``: numeric, real (unless allowed), of the expected shape."""
    if y is None:
        raise TypeError(f"`f` must return a number or an array of numbers; got None{where}.")
    if isinstance(y, (tuple, list)):
        try:
            arr = np.asarray(y)
        except ValueError:
            raise TypeError(
                f"`f` must return a number or an array of numbers; got a ragged "
                f"{type(y).__name__} ({describe(y)}){where}.") from None
    else:
        arr = np.asarray(y)
    if arr.dtype.kind not in "biufc":
        raise TypeError(
            f"`f` must return a number or an array of numbers; got {describe(y)}{where}.")
    if arr.dtype.kind == "c" and not complex_ok:
        raise TypeError(
            f"`f` must return real values; got dtype {arr.dtype}{where}. fastjac "
            "differentiates real-valued functions (the complex step uses complex values "
            "internally).")
    if expected_shape is not None and arr.shape != tuple(expected_shape):
        raise ValueError(
            f"`f` must return the same shape at every point: f(x) has shape "
            f"{tuple(expected_shape)} but f returned shape {arr.shape}{where}.")
    return arr


def is_readonly_rejection(exc) -> bool:
    """Did ``f`` fail because its input was read-only (Cython, eager Numba, in-place writes)?"""
    text = str(exc).lower()
    return isinstance(exc, (ValueError, TypeError)) and ("read-only" in text or "readonly" in text)


def modified_input_error(where="") -> ValueError:
    return ValueError(
        "`f` tried to modify its input in place. fastjac passes f its own copies so that "
        "the caller's x and the perturbation stack stay intact; copy inside f "
        f"(e.g. `x = x.copy()`) before writing to it{where}.")


def call_f(f, point, where):
    """Call ``f`` on a read-only ``point``; attach a note naming the evaluation if it raises.

    ``where`` is a string or a zero-argument callable producing one, so the
    description is only built on the error path.  Read-only rejections are
    re-raised untouched: the caller retries with a writable copy.
    """
    try:
        return f(point)
    except Exception as exc:
        if is_readonly_rejection(exc):
            raise
        where = where() if callable(where) else where
        if type(exc).__module__.startswith("numba"):
            raise TypeError(
                f"`f` is a Numba function that cannot be compiled for the input fastjac "
                f"passed{where}: {str(exc).splitlines()[0]}") from None
        raise annotate(exc, f"fastjac: raised by f{where}")


@dataclass
class Task:
    """Everything needed to evaluate ``f`` on blocks; holds no buffers, so it
    can be pickled and sent to a process or cluster executor."""

    f: object
    x0: np.ndarray            # (n,), working dtype
    x_shape: tuple
    out_shape: tuple
    out_dtype: np.dtype
    complex_step: bool = False
    strategy: str = "loop"
    writable: bool = False    # f rejects read-only input
    serialize: bool = False   # f reuses its output buffer
    #: Points evaluated beyond the blocks' own (retries after a read-only
    #: rejection), so that ``nfev`` counts every point f saw.
    extra: int = 0
    m: int = field(init=False)

    def __post_init__(self):
        self.m = int(np.prod(self.out_shape, dtype=np.int64))

    @property
    def n(self) -> int:
        return self.x0.shape[0]

    @property
    def stack_dtype(self):
        if self.complex_step:
            return np.result_type(self.x0.dtype, np.complex64)
        return self.x0.dtype

    @property
    def batches(self) -> bool:
        """Whether a block is evaluated in one call (see :meth:`evaluate`)."""
        return STRATEGIES[self.strategy].batched and \
            self.n * np.dtype(self.stack_dtype).itemsize < POINTWISE_ROW_BYTES

    def evaluate(self, block, offsets, center=False):
        strategy = STRATEGIES[self.strategy]
        if strategy.batched and not self.batches:
            # Points this large cost more to stack than to visit: a stack writes
            # every row before f reads it, while one buffer changed in place (a
            # coordinate) or refilled in one pass (a direction) is read by f alone.
            # The probe verified that f gives the same values point by point.
            return evaluate_loop(self, block, offsets, center)
        return strategy.evaluate(self, block, offsets, center)

    def call(self, arr, where):
        """``f(arr)`` with ``arr`` read-only, or a verified writable copy if f needs one."""
        if not self.writable:
            try:
                return call_f(self.f, readonly(arr), where)
            except Exception as exc:
                if not is_readonly_rejection(exc):
                    raise
                self.writable = True  # retry below, and from now on
            self.extra += 1
        work = arr.copy()
        y = call_f(self.f, work, where)
        if not np.array_equal(work, arr, equal_nan=True):
            raise modified_input_error(where() if callable(where) else where)
        return y


@dataclass(frozen=True)
class Strategy:
    """One way of calling ``f``: a row of :data:`STRATEGIES`."""

    name: str
    batched: bool
    evaluate: Callable
    layout: str | None = None
    summary: str = ""


def _where_block(task, block, offsets, rows):
    cols = block.cols
    span = f"{int(cols[0])}..{int(cols[-1])}" if len(cols) else "none"
    return f" (batched call on {rows} perturbed points, directions {span})"


def _real_outputs(task, Y, where):
    """Batched outputs as real values in the result dtype, or a clear error."""
    kind = Y.dtype.kind
    if task.complex_step:
        if kind != "c":
            raise TypeError(
                "`f` returned real values for complex input, so the complex step cannot see "
                "its derivative: f is not analytic as written (abs, real, comparisons, "
                f"var/std of complex input){where()}. Use method='central'.")
        return Y.imag
    if kind == "c":
        as_output(Y, where=where())
    if kind not in "f":
        if kind not in "biu":
            as_output(Y, where=where())
        return Y.astype(task.out_dtype)  # ints and bools as numbers (0/1)
    return Y


def _evaluate_batched(task, block, offsets, center, layout):
    S, b = len(offsets), block.size
    rows = S * b + bool(center)
    n = task.n
    dtype = np.dtype(task.stack_dtype)
    shape = (rows, n) if layout == "leading" else (n, rows)
    stack = stack_buffer(rows * n * dtype.itemsize, dtype).reshape(shape)
    if center:
        stack[...] = task.x0 if layout == "leading" else task.x0[:, None]  # the last point stays x0
    fill_stack(stack, layout, task.x0, block, offsets)
    batch_shape = ((rows,) + tuple(task.x_shape) if layout == "leading"
                   else tuple(task.x_shape) + (rows,))
    where = lambda: _where_block(task, block, offsets, rows)  # noqa: E731 (built on error only)
    if task.serialize:
        with _F_LOCK:
            Y = _call_batched(task, stack, batch_shape, where)
            Y = np.array(as_output(Y, where=where(), complex_ok=True), copy=True)
    else:
        Y = _call_batched(task, stack, batch_shape, where)
        if type(Y) is not np.ndarray:
            Y = as_output(Y, where=where(), complex_ok=True)
    want = ((rows,) + tuple(task.out_shape) if layout == "leading"
            else tuple(task.out_shape) + (rows,))
    if Y.shape != want:
        if Y.dtype.kind not in "biufc":
            as_output(Y, where=where())
        axis = "(k, *x.shape) to (k, *f(x).shape)" if layout == "leading" else \
            "(*x.shape, k) to (*f(x).shape, k)"
        raise BatchShapeError(
            f"batched `f` must map a batch of shape {axis} = {want}; got {Y.shape}"
            f"{where()}. Pass vectorized=False if f takes one point at a time.", Y.shape, want)
    fc = None
    if center:  # f(x) itself: the real part under the complex step
        Yc = Y.reshape(rows, task.m)[S * b] if layout == "leading" else Y.reshape(task.m, rows)[:, S * b]
        fc = np.asarray(Yc.real if Yc.dtype.kind == "c" else Yc, dtype=task.out_dtype)
    Y = _real_outputs(task, Y, where)
    if layout == "leading":
        Y2 = Y.reshape(rows, task.m)
        return Y2[:S * b].reshape(S, b, task.m), fc
    Y2 = Y.reshape(task.m, rows)
    F = Y2[:, :S * b].reshape(task.m, S, b).transpose(1, 2, 0)
    return F, fc


def _call_batched(task, stack, batch_shape, where):
    enter_nested()
    try:
        return task.call(stack.reshape(batch_shape), where)
    finally:
        leave_nested()


def evaluate_leading(task, block, offsets, center=False):
    return _evaluate_batched(task, block, offsets, center, "leading")


def evaluate_trailing(task, block, offsets, center=False):
    return _evaluate_batched(task, block, offsets, center, "trailing")


def _where_point(task, block, i, c):
    if isinstance(block, DenseDirections):
        return f" (direction {int(block.cols[i])}, offset {c})"
    if i >= block.size:
        return " (at x itself)"
    j = block.indices[block.indptr[i]]
    index = np.unravel_index(int(j), task.x_shape) if task.x_shape else ()
    moved = "element" if block.indptr[i + 1] - block.indptr[i] == 1 else "group starting at element"
    return f" (with x {moved} {tuple(int(k) for k in index)} moved by {c}*h)"


def _point_output(task, y, block, i, c):
    """``y`` as a real array of f(x)'s shape, or a clear error naming the point."""
    if not task.complex_step and task.out_shape == () and isinstance(y, (float, np.floating)):
        return y  # a scalar loss: nothing to check
    if type(y) is not np.ndarray or y.shape != tuple(task.out_shape) or y.dtype.kind not in "fiub":
        y = as_output(y, task.out_shape, _where_point(task, block, i, c),
                      complex_ok=task.complex_step)
        if task.complex_step:
            if y.dtype.kind != "c":
                raise TypeError(
                    "`f` returned real values for complex input, so the complex step cannot "
                    "see its derivative: f is not analytic as written (abs, real, "
                    f"comparisons){_where_point(task, block, i, c)}. Use method='central'.")
            return y.imag
    elif task.complex_step:
        raise TypeError(
            "`f` returned real values for complex input, so the complex step cannot see its "
            f"derivative: f is not analytic as written{_where_point(task, block, i, c)}. "
            "Use method='central'.")
    return y


def evaluate_loop(task, block, offsets, center=False):
    """One call of ``f`` per point, on one reused buffer."""
    S, b, m = len(offsets), block.size, task.m
    out_shape = tuple(task.out_shape)
    # A pooled buffer (a fresh one page-faults on every block); the caller
    # combines it before the next block.  f runs one nesting level deeper so a
    # fastjac call inside f cannot reuse it.
    F = stack_buffer((S * b + 1) * m * task.out_dtype.itemsize, task.out_dtype, "loop")
    F = F[:(S * b + 1) * m].reshape(S * b + 1, m)
    Fv = F[:S * b].reshape((S, b) + out_shape)
    # The point, in a pooled buffer (a fresh copy of a large x page-faults).
    xbuf = stack_buffer(task.n * np.dtype(task.stack_dtype).itemsize, task.stack_dtype, "point")
    dense = isinstance(block, DenseDirections)
    if not dense:  # dense rows rewrite every entry of the point: no fill needed
        xbuf[...] = task.x0
    view = readonly(xbuf).reshape(task.x_shape)
    x0 = task.x0
    coordinate = not dense and block.is_coordinate
    if coordinate:
        # Every perturbed value of the block at once, as Python scalars: the
        # per-point work is then one item assignment and one call of f.
        cols = block.indices.tolist()
        typ = np.dtype(task.stack_dtype).type
        # Rounded exactly as the stack rounds x0 + c h (in the stack's dtype).
        moved = (x0[block.indices][None, :].astype(task.stack_dtype)
                 + block.steps[None, :] * np.array([typ(c) for c in offsets])[:, None])
        moved, originals = moved.tolist(), x0[block.indices].tolist()
    f = task.f
    fast = not (task.writable or task.serialize)
    i, c = 0, offsets[0]
    enter_nested()
    try:
        for i in range(b):
            if coordinate:
                j = cols[i]
                for s in range(S):
                    xbuf[j] = moved[s][i]
                    c = offsets[s]
                    y = f(view) if fast else _careful_call(task, xbuf, block, i, c)
                    if type(y) is not np.ndarray or y.shape != out_shape or y.dtype.kind not in "fiub" \
                            or task.complex_step:
                        y = _point_output(task, y, block, i, c)
                    # Stored before the buffer moves on: f may return a view of its input.
                    Fv[s, i] = y
                xbuf[j] = originals[i]
                continue
            if isinstance(block, DenseDirections):
                row = block.V[i]
                for s, c in enumerate(offsets):
                    # One pass, rounded as the stack rounds x0 + c d.
                    if c == 1:
                        np.add(x0, row, out=xbuf)
                    elif c == -1:
                        np.subtract(x0, row, out=xbuf)
                    else:
                        np.add(x0, row * xbuf.dtype.type(c), out=xbuf)
                    y = f(view) if fast else _careful_call(task, xbuf, block, i, c)
                    Fv[s, i] = _point_output(task, y, block, i, c)
                continue  # the next row rewrites the whole point
            lo, hi = block.indptr[i], block.indptr[i + 1]
            idx, steps = block.indices[lo:hi], block.steps[lo:hi]
            base = x0[idx]
            for s, c in enumerate(offsets):
                xbuf[idx] = base + steps * xbuf.dtype.type(c)
                y = f(view) if fast else _careful_call(task, xbuf, block, i, c)
                Fv[s, i] = _point_output(task, y, block, i, c)
            xbuf[idx] = base
        if center:
            i, c = b, 0
            if dense:
                xbuf[...] = x0
            y = f(view) if fast else _careful_call(task, xbuf, block, b, 0)
            y = np.asarray(as_output(y, task.out_shape, " (at x itself)", complex_ok=True))
            F[S * b] = (y.real if y.dtype.kind == "c" else y).reshape(-1)
    except Exception as exc:
        if fast and is_readonly_rejection(exc):
            # f rejects read-only input, or writes into it: start the block
            # again with writable copies, each verified after the call (the
            # latter gets a clear error there).
            task.extra += i * S + 1
            task.writable = True
            return evaluate_loop(task, block, offsets, center)
        if isinstance(exc, (TypeError, ValueError)) and str(exc).startswith(("`f`", "batched")):
            raise
        raise annotate(exc, f"fastjac: raised by f{_where_point(task, block, i, c)}")
    finally:
        leave_nested()
    return F[:S * b].reshape(S, b, m), (F[S * b] if center else None)


def _careful_call(task, xbuf, block, i, c):
    """A call for an ``f`` that needs writable input or must not run concurrently."""
    where = lambda: _where_point(task, block, i, c)  # noqa: E731
    if task.serialize:
        with _F_LOCK:
            y = task.call(xbuf, where)
            return np.array(y, copy=True) if isinstance(y, np.ndarray) else y
    return task.call(xbuf, where)


def evaluate_numba(task, block, offsets, center=False):
    from .numba_driver import evaluate_block_numba

    F = np.empty((len(offsets), block.size, task.m), dtype=task.out_dtype)
    try:
        evaluate_block_numba(task.f, task.x0, task.x_shape, block, offsets, F,
                             scalar_output=(task.out_shape == ()))
    except Exception:
        # The driver cannot be compiled for this f (it returns a tuple, takes
        # other arguments...) or f raised in it: the Python loop serves every
        # callable and names what is wrong with f or its output, point by point.
        task.strategy = "loop"
        return evaluate_loop(task, block, offsets, center)
    fc = None
    if center:
        y = as_output(task.call(task.x0.reshape(task.x_shape), " (at x itself)"), task.out_shape,
                      " (at x itself)")
        fc = np.asarray(y, dtype=task.out_dtype).reshape(-1)
    return F, fc


#: Strategy name -> record.  The probe (``.probe``) chooses among them.
STRATEGIES = {
    "vectorized": Strategy("vectorized", True, evaluate_leading, "leading",
                           "one call on a (k, *x.shape) stack"),
    "vectorized-trailing": Strategy("vectorized-trailing", True, evaluate_trailing, "trailing",
                                    "one call on a (*x.shape, k) stack (points as extra columns)"),
    "loop": Strategy("loop", False, evaluate_loop, None, "one call per point"),
    "numba": Strategy("numba", False, evaluate_numba, None,
                      "a jitted driver calls the jitted f per point"),
}


def call_single(task, point, where=" (at x itself)"):
    """``f`` at one point (shape x.shape), through the task's safety rules."""
    return call_nested(lambda p: task.call(p, where), point)
