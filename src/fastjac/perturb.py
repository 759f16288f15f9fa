"""Batched perturbation stacks: ``x0 + c_s * d_i`` for many directions at once.

A *block* is a set of ``b`` perturbation directions.  Every Jacobian-like
quantity fastjac computes is assembled from blocks:

- a dense Jacobian uses coordinate directions ``h_j e_j``;
- a colored (sparse) Jacobian uses groups of coordinates moved together;
- ``jvp`` uses arbitrary dense directions ``t v``.

:func:`fill_stack` writes the stack for one block into a reused buffer, laid
out offset-major: rows ``s*b : (s+1)*b`` hold ``x0 + c_s * d_i``.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

__all__ = ["SparseDirections", "DenseDirections", "coordinate_blocks", "CoordinateBlocks", "fill_stack",
           "call_on_stack", "enter_nested", "leave_nested",
           "stack_buffer", "readonly"]


@dataclass(frozen=True)
class SparseDirections:
    """``b`` directions in CSR form: direction ``i`` moves ``indices[indptr[i]:indptr[i+1]]``
    by ``steps[indptr[i]:indptr[i+1]]``.  ``cols`` labels the directions (for a
    coordinate block, the coordinate itself)."""

    indptr: np.ndarray
    indices: np.ndarray
    steps: np.ndarray
    cols: np.ndarray

    @property
    def size(self) -> int:
        return len(self.indptr) - 1

    @property
    def is_coordinate(self) -> bool:
        return len(self.indices) == self.size

    def to_dense(self, n: int, dtype) -> np.ndarray:
        out = np.zeros((self.size, n), dtype=dtype)
        rows = np.repeat(np.arange(self.size), np.diff(self.indptr))
        out[rows, self.indices] = self.steps
        return out


@dataclass(frozen=True)
class DenseDirections:
    """``b`` dense directions ``V`` of shape ``(b, n)``, step already included."""

    V: np.ndarray
    cols: np.ndarray

    @property
    def size(self) -> int:
        return self.V.shape[0]


def coordinate_blocks(h: np.ndarray, block_size: int):
    """Yield :class:`SparseDirections` blocks of single-coordinate directions."""
    n = h.shape[0]
    for start in range(0, n, block_size):
        cols = np.arange(start, min(n, start + block_size))
        yield SparseDirections(np.arange(len(cols) + 1), cols, h[cols], cols)


class CoordinateBlocks:
    """The coordinate blocks of :func:`coordinate_blocks` as a lazy sequence:
    it has a length but builds each block only when iterated, so a run of
    thousands of blocks holds one at a time."""

    def __init__(self, h: np.ndarray, block_size: int):
        self.h, self.size = h, block_size

    def __len__(self):
        return -(-self.h.shape[0] // self.size)

    def __iter__(self):
        return coordinate_blocks(self.h, self.size)


_local = threading.local()


def stack_buffer(nbytes: int, dtype, tag: str = "stack") -> np.ndarray:
    """A per-thread scratch buffer of at least ``nbytes``, reused across calls.

    Fresh large arrays pay a page fault per 4 KiB page on first touch, which
    costs more than the arithmetic of a chunk; reusing one buffer avoids it.
    Per-thread, so that concurrent callers never share a stack.  ``tag``
    keeps separate buffers for separate purposes (the stack, the combined
    differences).
    """
    dtype = np.dtype(dtype)
    pool = getattr(_local, "pool", None)
    if pool is None:
        pool = _local.pool = {}
    # Keyed by nesting depth too: an f that itself calls fastjac (on this
    # thread, while reading our stack) must get buffers of its own.
    key = (tag, dtype, getattr(_local, "depth", 0))
    buf = pool.get(key)
    count = -(-nbytes // dtype.itemsize)
    if buf is None or buf.size < count:
        buf = pool[key] = np.empty(count, dtype=dtype)
    return buf[:count]


def enter_nested() -> None:
    """Buffers requested from here on belong to a nested fastjac call."""
    _local.depth = getattr(_local, "depth", 0) + 1


def leave_nested() -> None:
    _local.depth -= 1


def call_on_stack(f, stack):
    """Call ``f`` on a pooled stack, one nesting level deeper (see :func:`stack_buffer`)."""
    enter_nested()
    try:
        return f(stack)
    finally:
        leave_nested()


def readonly(arr: np.ndarray) -> np.ndarray:
    """A read-only view: ``f`` cannot modify fastjac's stack (or, through it, x)."""
    view = arr.view()
    view.flags.writeable = False
    return view


def fill_stack(stack: np.ndarray, x0: np.ndarray, block, offsets) -> None:
    """Write ``x0 + c_s * d_i`` for every offset ``c_s`` and direction ``d_i``.

    Parameters
    ----------
    stack : ndarray, shape (len(offsets) * b, n)
    x0 : ndarray, shape (n,)
    block : SparseDirections or DenseDirections
    offsets : sequence of float or complex
        For the complex step the offset is ``1j`` and ``stack`` is complex.

    Notes
    -----
    ``f`` only ever sees a read-only view of the stack, so after one block
    the buffer still holds ``x0`` everywhere except the entries that block
    moved.  When the same thread fills the same buffer for the same ``x0``
    again, only those entries are restored instead of rewriting the whole
    stack: one pass over the chunk saved per block.
    """
    b = block.size
    key = (stack.__array_interface__["data"][0], stack.shape, stack.dtype.str)
    filled = getattr(_local, "filled", None)
    if filled is not None and filled[0] == key and filled[1] is x0 and filled[2] is not None:
        filled[2](stack, x0)
    else:
        stack[...] = x0
    _local.filled = (key, x0, None)
    if isinstance(block, DenseDirections):
        for s, c in enumerate(offsets):
            rows = stack[s * b:(s + 1) * b]
            rows += block.V * stack.dtype.type(c)
        return  # every row moved: the next fill starts afresh
    n = x0.shape[0]
    if block.is_coordinate and b and block.indices[-1] - block.indices[0] == b - 1:
        # Contiguous coordinates: the moved entries lie on a diagonal of each
        # offset's (b, n) slab, reachable by basic slicing (no fancy indexing).
        start = int(block.indices[0])
        base = x0[start:start + b]
        S = len(offsets)
        for s, c in enumerate(offsets):
            diag = stack[s * b:(s + 1) * b].reshape(-1)[start::n + 1]
            diag[...] = base + block.steps * stack.dtype.type(c)

        def restore(stack, x0):
            for s in range(S):
                stack[s * b:(s + 1) * b].reshape(-1)[start::n + 1] = x0[start:start + b]

        _local.filled = (key, x0, restore)
        return
    idx = block.indices
    if b == 1 and len(idx) > 1 and idx[-1] - idx[0] == len(idx) - 1 and np.all(idx[1:] > idx[:-1]):
        # One group over an ascending run (the diagonal's single color):
        # basic slices instead of a gather/scatter of every entry.
        run = slice(int(idx[0]), int(idx[-1]) + 1)
        for s, c in enumerate(offsets):
            stack[s, run] = x0[run] + block.steps * stack.dtype.type(c)
        S = len(offsets)

        def restore(stack, x0):
            stack[:S, run] = x0[run]

        _local.filled = (key, x0, restore)
        return
    rows = np.repeat(np.arange(b), np.diff(block.indptr))
    cols = block.indices
    base = x0[cols]
    for s, c in enumerate(offsets):
        stack[s * b + rows, cols] = base + block.steps * stack.dtype.type(c)
    # Grouped (colored) directions: restore by the same fancy index.
    S = len(offsets)

    def restore(stack, x0):
        for s in range(S):
            stack[s * b + rows, cols] = x0[cols]

    _local.filled = (key, x0, restore)
