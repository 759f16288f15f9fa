"""What a check compares: linear functionals of ``J``, entry by entry.

Every check reduces to a :class:`Problem`: a numeric array ``Q`` of shape
``(R, K)`` against an expected array of the same shape, where column ``k``
is ``J`` applied to a direction ``d_k`` (a coordinate for full and sampled
checks, a random vector for directional ones) and row ``r`` is an output of
``f`` or a contraction of the outputs with a cotangent (``check_vjp``).  The
problem knows how to re-measure a column (for second opinions and
localisation) and how to label its entries for the report.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .._engine import DenseDirections, coordinate_block

__all__ = ["Problem", "Directions"]


@dataclass
class Directions:
    """The directions behind the columns of a problem.

    The first ``len(index)`` columns are coordinates (``index[c]`` moved by
    ``step[c]``); the rest are the dense rows of ``V`` (column ``c`` moves
    ``x`` by ``step[c] * V[c - len(index)]``).
    """

    step: np.ndarray                  # (K,) first-pass step per column
    index: np.ndarray                 # (s,) coordinates of the first s columns
    V: np.ndarray | None = None       # (K - s, n) dense directions, or None
    #: Scale of the inputs each column moves (for the round-off of the point).
    scale: np.ndarray | None = None

    @property
    def count(self) -> int:
        return len(self.step)

    def is_dense(self, c) -> bool:
        return c >= len(self.index)

    def vector(self, c, n) -> np.ndarray:
        """Column ``c``'s direction as a dense vector (step excluded)."""
        if self.is_dense(c):
            return self.V[c - len(self.index)].astype(np.float64)
        v = np.zeros(n)
        v[self.index[c]] = 1.0
        return v

    def blocks(self, cols, spacing):
        """``[(positions, block)]`` moving columns ``cols`` by ``spacing``, one block per kind."""
        cols = np.asarray(cols, dtype=np.int64)
        spacing = np.asarray(spacing, dtype=np.float64)
        s = len(self.index)
        out = []
        coord = np.flatnonzero(cols < s)
        if len(coord):
            out.append((coord, coordinate_block(self.index[cols[coord]], spacing[coord],
                                                cols[coord])))
        dense = np.flatnonzero(cols >= s)
        if len(dense):
            rows = self.V[cols[dense] - s]
            out.append((dense, DenseDirections(rows * spacing[dense, None].astype(rows.dtype),
                                               cols[dense])))
        return out


@dataclass
class Problem:
    """Compare ``numeric`` with ``expected``, both ``(R, K)``.

    Attributes
    ----------
    prep : Prepared
        The engine bound to the point (user's f, the plan, f(x)).
    numeric, expected : ndarray, shape (R, K)
        ``expected`` may be the caller's array in its own dtype (a view).
    atol, rtol : float
        The per-entry tolerance is ``atol_of(cols) + rtol * |expected|``.
    directions : Directions
    contract : ndarray, shape (R, m), optional
        Rows as contractions of f's outputs (``None``: rows are outputs).
    out_label, in_label : callable
        Entry labels for the report.
    col_atol : ndarray, shape (K,), optional
        A per-column absolute tolerance (directional checks propagate
        ``atol`` through the direction); default ``atol`` everywhere.
    col_rtol_scale : ndarray, shape (R, K) or None
        For directional checks, the tolerance's relative part is taken
        against ``rtol * col_rtol_scale`` (the root-sum-square of the
        expected terms) instead of ``|expected|``.
    """

    prep: object
    numeric: np.ndarray
    expected: np.ndarray
    atol: float
    rtol: float
    directions: Directions
    out_label: Callable
    in_label: Callable
    contract: np.ndarray | None = None
    col_atol: np.ndarray | None = None
    rel_scale: np.ndarray | None = None
    shape: tuple | None = None
    notes: list = field(default_factory=list)
    #: Label of input coordinate j (for localised culprits); default ``in_label``.
    coord_label: Callable | None = None

    @property
    def R(self) -> int:
        return self.numeric.shape[0]

    @property
    def K(self) -> int:
        return self.numeric.shape[1]

    def tolerance(self, rows, cols, expected=None):
        """Tolerance of the entries ``(rows, cols)`` (broadcastable index arrays)."""
        e = self.expected[rows, cols] if expected is None else expected
        atol = self.atol if self.col_atol is None else self.col_atol[cols]
        base = np.abs(e) if self.rel_scale is None else self.rel_scale[rows, cols]
        return atol + self.rtol * np.asarray(base, dtype=np.float64)

    def fscale(self):
        """Scale of each row's values, for their round-off: ``|f_i(x)|`` per
        output, contracted with ``|C|`` for contracted rows.  (Each output's own
        size: a scale shared by all outputs would let a large output's round-off
        hide a small output's bug.  Where values near x are larger than at x,
        the second opinion's window supplies the scale.)"""
        scale = np.abs(self.prep.fx.reshape(-1).astype(np.float64))
        return scale if self.contract is None else np.abs(self.contract) @ scale

    def roundoff(self, rows, cols, numeric=None):
        """Round-off model of the first estimate at entries ``(rows, cols)``.

        Each evaluation carries ``ROUNDOFF_FACTOR * EPS * |f|``; the stencil
        adds ``sum |w|`` of them over the step, and rounding the perturbed
        point to ``EPS |x|`` moves f by ``EPS |x| / h`` of its slope.
        """
        from ..tolerances import ROUNDOFF_FACTOR

        prep = self.prep
        eps, wsum = prep.eps, _weight_sum(prep.stencil)
        h = self.directions.step[cols]
        fs = self._fscale()[rows]
        if isinstance(rows, slice):
            fs = fs[:, None]
        q = np.abs(self.numeric[rows, cols] if numeric is None else numeric)
        scale = self.directions.scale
        xs = 1.0 if scale is None else scale[cols]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if prep.stencil.complex_step:
                return 5 * eps * q
            return ROUNDOFF_FACTOR * eps * wsum * fs / h + eps * xs / h * q

    def _fscale(self):
        cached = getattr(self, "_fs_cache", None)
        if cached is None:
            cached = self._fs_cache = self.fscale()
        return cached

    def contracted(self, F):
        """Values ``F`` of shape ``(S, b, m)`` as the problem's rows ``(S, b, R)``."""
        F = np.asarray(F, dtype=np.float64)
        return F if self.contract is None else F @ self.contract.T


def _weight_sum(stencil):
    return 1.0 if stencil.complex_step else float(np.sum(np.abs(stencil.weights)))
