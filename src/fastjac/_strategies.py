"""Evaluation strategies: how ``f`` is called on a block of perturbed points.

A table, ``STRATEGIES``, maps a name to a function ``(evaluator, block) -> F``
with ``F[s, i] = f(x0 + c_s d_i)`` flattened to the output size ``m``:

``"vectorized"``
    One call of ``f`` on the whole ``(S*b, *x.shape)`` stack.
``"loop"``
    One call per point on a single reused, read-only buffer.
``"numba"``
    A jitted driver calls a jitted ``f`` per point (see ``_numba_driver``).

``choose_strategy`` resolves ``vectorized="auto"`` by probing ``f`` with the
first real block and checking a few rows against single calls, because a
function can broadcast over a leading axis without error and still be wrong
(the notebook's ``softmax`` normalises over axis 0).
"""
from __future__ import annotations

from functools import partial
from dataclasses import dataclass, field

import numpy as np

from ._jit import is_numba_dispatcher
from ._memo import FunctionMemo
from ._validate import annotate, describe
from .perturb import (DenseDirections, call_on_stack, enter_nested, fill_stack, leave_nested,
                      readonly, stack_buffer)
from .stencils import Stencil

__all__ = ["Evaluator", "STRATEGIES", "choose_strategy", "call_f", "as_output"]


def as_output(y, expected_shape=None, where="") -> np.ndarray:
    """Validate one output of ``f``: numeric, and of the expected shape."""
    if y is None:
        raise TypeError(f"`f` must return a number or an array of numbers; got None{where}.")
    arr = np.asarray(y)
    if arr.dtype.kind not in "biufc":
        raise TypeError(
            f"`f` must return a number or an array of numbers; got {describe(y)}{where}.")
    if expected_shape is not None and arr.shape != tuple(expected_shape):
        raise ValueError(
            f"`f` must return the same shape at every point: f(x) has shape "
            f"{tuple(expected_shape)} but f returned shape {arr.shape}{where}.")
    return arr


def call_f(f, point, where):
    """Call ``f`` and attach a note naming the evaluation if it raises.

    ``where`` is a string or a zero-argument callable producing one, so the
    description is only built on the error path.
    """
    try:
        return f(point)
    except ValueError as exc:
        where = where() if callable(where) else where
        if "read-only" in str(exc):
            raise ValueError(
                "`f` tried to modify its input in place. fastjac passes read-only "
                "arrays so that the caller's x and the perturbation stack stay intact; "
                f"copy inside f (e.g. `x = x.copy()`) before writing to it.{where}") from exc
        raise annotate(exc, f"fastjac: raised by f{where}")
    except Exception as exc:
        where = where() if callable(where) else where
        if type(exc).__module__.startswith("numba"):
            raise TypeError(
                f"`f` is a Numba function that cannot be compiled for the input "
                f"fastjac passed{where}: {str(exc).splitlines()[0]}") from None
        raise annotate(exc, f"fastjac: raised by f{where}")


@dataclass
class Evaluator:
    """Everything needed to evaluate ``f`` on blocks; holds no buffers, so it
    can be pickled and sent to a process or cluster executor."""

    f: object
    x0: np.ndarray            # (n,), working dtype
    x_shape: tuple
    out_shape: tuple
    stencil: Stencil
    out_dtype: np.dtype
    strategy: str = "loop"
    offsets: tuple = field(init=False)

    def __post_init__(self):
        self._m = int(np.prod(self.out_shape, dtype=np.int64))
        self.offsets = self.stencil.nonzero[0]
        if self.stencil.complex_step:
            self.offsets = tuple(1j * c for c in self.offsets)

    @property
    def m(self) -> int:
        return self._m

    @property
    def n(self) -> int:
        return self.x0.shape[0]

    @property
    def stack_dtype(self):
        if self.stencil.complex_step:
            return np.result_type(self.x0.dtype, np.complex64)
        return self.x0.dtype

    def evaluate(self, block) -> np.ndarray:
        return STRATEGIES[self.strategy](self, block)


def _where_block(ev, block):
    cols = block.cols
    span = f"{int(cols[0])}..{int(cols[-1])}" if len(cols) else "none"
    return f" (batched call on {len(ev.offsets) * block.size} perturbed points, directions {span})"


def _finish(ev, Y, rows, where):
    """Check the batched output and view it as ``(S, b, m)`` real values."""
    Y = np.asarray(Y)
    if Y.dtype.kind not in "biufc":
        as_output(Y, where=where())
    if Y.shape != (rows,) + tuple(ev.out_shape):
        where = where()
        raise ValueError(
            f"with vectorized=True, `f` must map a batch of shape (k, *x.shape) to "
            f"(k, *f(x).shape) = {(rows,) + tuple(ev.out_shape)}; got {Y.shape}{where}. "
            f"Pass vectorized=False if f takes one point at a time.")
    if ev.stencil.complex_step:
        Y = Y.imag
    elif Y.dtype.kind == "b":  # booleans as 0/1: numpy cannot subtract them
        Y = Y.astype(ev.out_dtype)
    return Y.reshape(len(ev.offsets), rows // len(ev.offsets), ev.m)


def _stack_for(ev, block):
    rows = len(ev.offsets) * block.size
    dtype = ev.stack_dtype
    stack = stack_buffer(rows * ev.n * np.dtype(dtype).itemsize, dtype).reshape(rows, ev.n)
    fill_stack(stack, ev.x0, block, ev.offsets)
    return stack


def evaluate_vectorized(ev, block):
    stack = _stack_for(ev, block)
    where = lambda: _where_block(ev, block)  # noqa: E731 (built only on error)
    Y = call_f(partial(call_on_stack, ev.f), readonly(stack).reshape((stack.shape[0],) + tuple(ev.x_shape)), where)
    return _finish(ev, Y, stack.shape[0], where)


def evaluate_loop(ev, block):
    """One call of ``f`` per point, on one reused read-only buffer."""
    S, b = len(ev.offsets), block.size
    out_shape, complex_step = tuple(ev.out_shape), ev.stencil.complex_step
    # A pooled buffer (a fresh one page-faults on every block); the caller
    # combines it before the next block, and f runs one nesting level deeper
    # (enter_nested below) so a fastjac call inside f cannot reuse it.
    F = stack_buffer(S * b * ev.m * ev.out_dtype.itemsize, ev.out_dtype, "loop").reshape(S, b, ev.m)
    Fv = F.reshape((S, b) + out_shape)  # f's output is stored without a reshape
    xbuf = ev.x0.astype(ev.stack_dtype, copy=True)
    view = readonly(xbuf).reshape(ev.x_shape)
    f, x0 = ev.f, ev.x0
    i, c = 0, ev.offsets[0]
    coordinate = not isinstance(block, DenseDirections) and block.is_coordinate
    if coordinate:
        # Every perturbed value of the block at once, as Python scalars: the
        # per-point work is then one item assignment and one call of f.
        cols = block.indices.tolist()
        moved = (x0[block.indices][None, :]
                 + np.asarray(ev.offsets)[:, None] * block.steps[None, :]).astype(ev.stack_dtype)
        moved, originals = moved.tolist(), x0[block.indices].tolist()
    enter_nested()
    try:
        for i in range(b):
            if coordinate:
                j = cols[i]
                for s in range(S):
                    xbuf[j] = moved[s][i]
                    y = f(view)
                    if type(y) is not np.ndarray or y.shape != out_shape or y.dtype.kind not in "fiub":
                        y = _checked_output(y, ev, block, i, ev.offsets[s])
                    # Stored before the buffer moves on: f may return a view of its input.
                    Fv[s, i] = y.imag if complex_step else y
                xbuf[j] = originals[i]
                continue
            if isinstance(block, DenseDirections):
                idx, steps = slice(None), block.V[i]
            else:
                lo, hi = block.indptr[i], block.indptr[i + 1]
                idx, steps = block.indices[lo:hi], block.steps[lo:hi]
            base = x0[idx]
            for s, c in enumerate(ev.offsets):
                xbuf[idx] = base + c * steps
                y = _checked_output(f(view), ev, block, i, c)
                Fv[s, i] = y.imag if complex_step else y
            xbuf[idx] = base
    except Exception as exc:
        if isinstance(exc, (TypeError, ValueError)) and str(exc).startswith("`f`"):
            raise
        where = _where_point(ev, block, i, c)
        if isinstance(exc, ValueError) and "read-only" in str(exc):
            raise ValueError(
                "`f` tried to modify its input in place. fastjac passes read-only "
                "arrays so that the caller's x stays intact; copy inside f "
                f"(e.g. `x = x.copy()`) before writing to it{where}.") from exc
        raise annotate(exc, f"fastjac: raised by f{where}")
    finally:
        leave_nested()
    return F


def _checked_output(y, ev, block, i, c):
    """``y`` as an array of f(x)'s shape, or a clear error naming the point."""
    y = np.asarray(y)
    if y.shape != tuple(ev.out_shape) or y.dtype.kind not in "biufc":
        as_output(y, ev.out_shape, _where_point(ev, block, i, c))
    return y


def _where_point(ev, block, i, c):
    if isinstance(block, DenseDirections):
        return f" (direction {int(block.cols[i])}, offset {c})"
    j = block.indices[block.indptr[i]]
    index = np.unravel_index(int(j), ev.x_shape) if ev.x_shape else ()
    moved = "element" if block.indptr[i + 1] - block.indptr[i] == 1 else "group starting at element"
    return f" (with x {moved} {tuple(int(k) for k in index)} moved by {c}*h)"


def evaluate_numba(ev, block):
    from ._numba_driver import evaluate_block_numba

    F = np.empty((len(ev.offsets), block.size, ev.m), dtype=ev.out_dtype)
    try:
        evaluate_block_numba(ev.f, ev.x0, ev.x_shape, block, ev.offsets, F,
                             scalar_output=(ev.out_shape == ()))
    except Exception as exc:
        import numba.core.errors as nerr

        if isinstance(exc, nerr.NumbaError):
            # The driver could not be compiled for this f (e.g. it returns a
            # tuple): the Python loop serves every callable.
            ev.strategy = "loop"
            return evaluate_loop(ev, block)
        raise annotate(exc, f"fastjac: raised by f in the Numba driver{_where_block(ev, block)}")
    return F


STRATEGIES = {
    "vectorized": evaluate_vectorized,
    "loop": evaluate_loop,
    "numba": evaluate_numba,
}

# Decisions of vectorized="auto", per function, input shape and dtype.
_decisions = FunctionMemo()


def _fallback(f, x_shape, stencil):
    if is_numba_dispatcher(f) and not stencil.complex_step and len(x_shape) > 0:
        return "numba"
    return "loop"


def choose_strategy(ev: Evaluator, vectorized, first_block, eps: float):
    """Resolve ``vectorized`` into a strategy name.

    Returns ``(strategy, F)`` where ``F`` is the first block's evaluation when
    the probe already computed it (so the probe costs no extra batch).
    """
    if vectorized is True:
        return "vectorized", None
    if vectorized is False:
        return _fallback(ev.f, ev.x_shape, ev.stencil), None
    key = (tuple(ev.x_shape), ev.x0.dtype.str, tuple(ev.out_shape), ev.stencil.complex_step)
    known = _decisions.get(ev.f, key)
    if known is not None:
        return known, None

    stack = _stack_for(ev, first_block)
    rows = stack.shape[0]
    batch = readonly(stack).reshape((rows,) + tuple(ev.x_shape))
    try:
        Y = call_on_stack(ev.f, batch)
        Y = np.asarray(Y)
        ok = Y.shape == (rows,) + tuple(ev.out_shape) and Y.dtype.kind in "biufc"
    except Exception:
        ok = False
    if ok:
        # Broadcasting without error is not enough: compare a few rows with
        # single calls.  Row-mixing bugs show at the size of the step
        # (~EPS**(1/3) relative), far above batching round-off (~n*EPS); the
        # threshold 8*EPS**(2/3) sits between the two.
        Y = np.array(Y, copy=True, dtype=np.float64 if Y.dtype.kind == "b" else None)
        tol = 8 * eps ** (2 / 3)
        for r in sorted({0, rows // 2, rows - 1}):
            try:
                single = np.asarray(ev.f(readonly(stack[r].copy()).reshape(ev.x_shape)))
            except Exception:
                ok = False
                break
            if single.shape != tuple(ev.out_shape):
                ok = False
                break
            if single.dtype.kind == "b":
                single = single.astype(np.float64)
            scale = max(1.0, float(np.max(np.abs(single), initial=0.0)))
            diff = np.abs(Y[r] - single)
            if not (np.all(diff <= tol * scale) or np.array_equal(Y[r], single, equal_nan=True)):
                ok = False
                break
    strategy = "vectorized" if ok else _fallback(ev.f, ev.x_shape, ev.stencil)
    _decisions.set(ev.f, key, strategy)
    if ok:
        if ev.stencil.complex_step:
            Y = Y.imag
        elif Y.dtype.kind == "b":
            Y = Y.astype(ev.out_dtype)
        return strategy, Y.reshape(len(ev.offsets), first_block.size, ev.m)
    return strategy, None
