"""Perturbation stacks in reused buffers: ``x0 + c_s d_i`` for a block at once.

Two layouts, because functions batch in two ways:

``"leading"``
    rows of a ``(rows, n)`` buffer, handed to ``f`` as ``(rows, *x.shape)``
    (numpy code that reduces over ``axis=-1``);
``"trailing"``
    columns of an ``(n, rows)`` buffer, handed to ``f`` as
    ``(*x.shape, rows)`` (the notebook's column-major code, which reduces
    over ``axis=0``: extra points are extra columns).

Either way point ``r = s*b + i`` holds ``x0 + c_s d_i`` (offset-major), and
an optional last point is ``x0`` itself (a guard compares it with ``f(x)``).
"""
from __future__ import annotations

import threading

import numpy as np

from .directions import DenseDirections

__all__ = ["stack_buffer", "fill_stack", "point_view", "readonly", "enter_nested",
           "leave_nested", "call_nested", "LAYOUTS"]

LAYOUTS = ("leading", "trailing")

_local = threading.local()


def stack_buffer(nbytes: int, dtype, tag: str = "stack") -> np.ndarray:
    """A per-thread scratch buffer of at least ``nbytes``, reused across calls.

    Fresh large arrays pay a page fault per 4 KiB page on first touch, which
    costs more than the arithmetic of a chunk; reusing one buffer avoids it.
    Per thread, so concurrent callers never share one, and per nesting depth,
    so an ``f`` that itself calls fastjac gets buffers of its own.  Whatever
    a caller reads from it must be consumed (or copied) before the same
    thread asks for the buffer again: executor tasks therefore return fresh
    arrays (see :mod:`.parallel`).
    """
    dtype = np.dtype(dtype)
    pool = getattr(_local, "pool", None)
    if pool is None:
        pool = _local.pool = {}
    key = (tag, dtype, getattr(_local, "depth", 0))
    buf = pool.get(key)
    count = -(-nbytes // dtype.itemsize)
    if buf is None or buf.size < count:
        buf = pool[key] = np.empty(count, dtype=dtype)
        if tag == "stack":
            _local.filled = None
    return buf[:count]


def enter_nested() -> None:
    """Buffers requested from here on belong to a nested fastjac call."""
    _local.depth = getattr(_local, "depth", 0) + 1


def leave_nested() -> None:
    _local.depth -= 1


def call_nested(f, arg):
    """Call ``f`` one nesting level deeper (see :func:`stack_buffer`)."""
    enter_nested()
    try:
        return f(arg)
    finally:
        leave_nested()


def readonly(arr: np.ndarray) -> np.ndarray:
    """A read-only view: ``f`` cannot modify fastjac's stack (or, through it, x)."""
    view = arr.view()
    view.flags.writeable = False
    return view


def point_view(stack: np.ndarray, layout: str, r: int) -> np.ndarray:
    """Point ``r`` of a stack, as a 1-D array (a copy for the trailing layout)."""
    return stack[r] if layout == "leading" else stack[:, r].copy()


def _rows(stack, layout):
    """The stack as (rows, n), a view in either layout."""
    return stack if layout == "leading" else stack.T


def _diagonal(stack, layout, s, b, start, n):
    """Writable view of the entries ``(s*b + i, start + i)``, ``i < b``, by basic slicing."""
    flat = stack.reshape(-1)
    if layout == "leading":
        return flat[(s * b) * n + start::n + 1][:b]
    rows = stack.shape[1]
    return flat[start * rows + s * b::rows + 1][:b]


def _ascending_run(idx) -> bool:
    return len(idx) > 1 and idx[-1] - idx[0] == len(idx) - 1 and bool(np.all(idx[1:] > idx[:-1]))


def fill_stack(stack: np.ndarray, layout: str, x0: np.ndarray, block, offsets) -> None:
    """Write ``x0 + c_s d_i`` for every offset ``c_s`` and direction ``d_i``.

    Parameters
    ----------
    stack : ndarray, shape (rows, n) for ``"leading"``, (n, rows) for ``"trailing"``
        ``rows >= len(offsets) * b``; rows beyond hold ``x0``.
    layout : {'leading', 'trailing'}
    x0 : ndarray, shape (n,)
    block : SparseDirections or DenseDirections
    offsets : sequence of float or complex
        For the complex step the offset is ``1j`` and ``stack`` is complex.

    Notes
    -----
    ``f`` only sees read-only views of the stack, so after one block the
    buffer still holds ``x0`` except where that block moved it.  When the
    same thread fills the same buffer for the same ``x0`` again, only those
    entries are restored instead of rewriting the whole stack: one pass over
    the chunk saved per block.
    """
    b, n = block.size, x0.shape[0]
    key = (stack.__array_interface__["data"][0], stack.shape, stack.dtype.str, layout)
    filled = getattr(_local, "filled", None)
    if filled is not None and filled[0] == key and filled[1] is x0 and filled[2] is not None:
        filled[2]()
    elif layout == "leading":
        stack[...] = x0
    else:
        stack[...] = x0[:, None]
    _local.filled = (key, x0, None)
    rows = _rows(stack, layout)
    typ = stack.dtype.type
    if isinstance(block, DenseDirections):
        for s, c in enumerate(offsets):
            rows[s * b:(s + 1) * b] += block.V * typ(c)
        return  # every point moved: the next fill starts afresh
    S = len(offsets)
    start = block.contiguous_start
    if start is not None:
        base = x0[start:start + b]
        for s, c in enumerate(offsets):
            _diagonal(stack, layout, s, b, start, n)[...] = base + block.steps * typ(c)

        def restore():
            for s in range(S):
                _diagonal(stack, layout, s, b, start, n)[...] = base
    elif b == 1 and _ascending_run(block.indices):
        # One group over consecutive coordinates (a diagonal pattern's single
        # color): basic slices instead of a gather/scatter of every entry.
        run = slice(int(block.indices[0]), int(block.indices[-1]) + 1)
        base = x0[run]
        for s, c in enumerate(offsets):
            rows[s, run] = base + block.steps * typ(c)

        def restore():
            rows[:S, run] = base
    else:
        r = np.repeat(np.arange(b), np.diff(block.indptr))
        cols = block.indices
        base = x0[cols]
        for s, c in enumerate(offsets):
            rows[s * b + r, cols] = base + block.steps * typ(c)

        def restore():
            for s in range(S):
                rows[s * b + r, cols] = base
    _local.filled = (key, x0, restore)
