"""Perturbation directions, in blocks: what one batched evaluation moves.

A *block* is a set of ``b`` directions ``d_i``.  Every quantity the engine
computes is assembled from blocks evaluated at ``x0 + c_s d_i`` for the
offsets ``c_s`` of a stencil:

- a dense Jacobian uses coordinate directions ``h_j e_j``
  (:class:`SparseDirections` with one entry per direction);
- a colored (sparse) Jacobian moves groups of coordinates together
  (:class:`SparseDirections` in CSR form);
- ``jvp``, directional checks and the monitor use dense directions
  (:class:`DenseDirections`, the step already included).

A *source* of blocks is a callable ``source(b)`` that returns a sized
iterable of blocks of at most ``b`` directions, built lazily, so a run of
thousands of blocks holds one at a time.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SparseDirections", "DenseDirections", "coordinate_block", "CoordinateBlocks",
           "coordinate_source", "dense_source"]


@dataclass(frozen=True)
class SparseDirections:
    """``b`` directions in CSR form: direction ``i`` moves the entries
    ``indices[indptr[i]:indptr[i+1]]`` by ``steps[indptr[i]:indptr[i+1]]``.
    ``cols`` labels the directions (for a coordinate block, the coordinate)."""

    indptr: np.ndarray
    indices: np.ndarray
    steps: np.ndarray
    cols: np.ndarray
    #: First coordinate when the block is the run ``start, start+1, ...`` of
    #: single coordinates (set by the producer, which knows; else None).
    contiguous_start: int | None = None

    @property
    def size(self) -> int:
        return len(self.indptr) - 1

    @property
    def is_coordinate(self) -> bool:
        return len(self.indices) == self.size


@dataclass(frozen=True)
class DenseDirections:
    """``b`` dense directions ``V`` of shape ``(b, n)``, step already included."""

    V: np.ndarray
    cols: np.ndarray

    @property
    def size(self) -> int:
        return self.V.shape[0]

    is_coordinate = False
    contiguous_start = None


def coordinate_block(indices, steps, cols=None) -> SparseDirections:
    """One direction per coordinate: ``indices[i]`` moved by ``steps[i]``."""
    indices = np.asarray(indices, dtype=np.int64)
    return SparseDirections(np.arange(len(indices) + 1), indices, np.asarray(steps),
                            indices if cols is None else np.asarray(cols))


class CoordinateBlocks:
    """Coordinate blocks over ``indices`` (default: every coordinate of ``h``)
    as a lazy sequence: it has a length but builds each block on iteration."""

    def __init__(self, h: np.ndarray, block_size: int, indices=None):
        self.h, self.size = h, max(1, int(block_size))
        self.indices = indices
        self.count = h.shape[0] if indices is None else len(indices)

    def __len__(self):
        return -(-self.count // self.size)

    def __iter__(self):
        for lo in range(0, self.count, self.size):
            hi = min(self.count, lo + self.size)
            if self.indices is None:
                cols = np.arange(lo, hi)
                yield SparseDirections(np.arange(hi - lo + 1), cols, self.h[cols], cols, lo)
            else:
                sel = self.indices[lo:hi]
                yield SparseDirections(np.arange(hi - lo + 1), sel, self.h[sel], np.arange(lo, hi))


def coordinate_source(h, indices=None):
    """A block source over coordinates (all of them, or ``indices`` in order)."""
    return lambda b: CoordinateBlocks(h, b, indices)


class _DenseBlocks:
    def __init__(self, V, size):
        self.V, self.size = V, max(1, int(size))

    def __len__(self):
        return -(-self.V.shape[0] // self.size)

    def __iter__(self):
        for lo in range(0, self.V.shape[0], self.size):
            yield DenseDirections(self.V[lo:lo + self.size], np.arange(lo, min(lo + self.size, self.V.shape[0])))


def dense_source(V):
    """A block source over the rows of ``V`` (each a direction, step included)."""
    return lambda b: _DenseBlocks(V, b)
