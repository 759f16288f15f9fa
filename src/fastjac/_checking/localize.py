"""Localisation: which coordinates carry a failing direction's mismatch.

A directional check compares ``e . v`` (expected) with ``J v`` (numeric)
along a random ``v``; when they disagree, the culprit coordinates are found
by group testing.  The direction's support is split in two; the mismatch of
one half ``A`` is re-measured along ``v`` restricted to ``A`` (one forward
difference from the known ``f(x)``: one evaluation), and the other half's
follows by linearity, ``delta(B) = delta(A + B) - delta(A)``.  The search
recurses into the half that carries the mismatch, so a single wrong entry of
``n`` is named in ``ceil(log2 n)`` evaluations, plus two for a central
difference at the culprit itself (its value in the report).

The first split follows the inputs of a tuple/dict ``x``, so the wrong input
is named before any entry.  When the mismatch is spread over both halves (a
wrong factor on a whole parameter), the search stops and says so instead of
naming an arbitrary coordinate.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .._engine import DenseDirections, coordinate_block, values

__all__ = ["localize", "Found"]

#: A half carries the mismatch when it holds at least this share of it.
_DOMINANT = 0.75


@dataclass
class Found:
    """A culprit: the coordinates ``group`` (one, or a spread block) of row ``r``."""

    r: int
    group: np.ndarray
    expected: float
    numeric: float
    spread: bool
    evaluations: int


def _forward(prep, v, t, contract):
    """``J v`` (rows of the problem) by a forward difference of step ``t``, one evaluation."""
    F = values(prep, DenseDirections((v * t)[None, :].astype(prep.x0.dtype), np.arange(1)),
               (1.0,))[0, 0]
    d = (np.asarray(F, np.float64) - prep.fx.reshape(-1).astype(np.float64)) / t
    return d if contract is None else contract @ d


def localize(problem, r, l, delta, expected_of, h_coord, *, blocks=None, budget=None):
    """Find the coordinates behind the mismatch ``delta`` of entry ``(r, l)``.

    Parameters
    ----------
    problem : Problem
        A directional problem (column ``l`` is the dense direction ``V[l]``).
    r, l : int
        The failing entry: row (output or cotangent) and direction.
    delta : float
        ``expected - numeric`` of that entry.
    expected_of : callable
        ``expected_of(V)``: the expected values ``(R, k)`` along the rows of ``V``.
    h_coord : ndarray, shape (n,)
        Per-coordinate steps, for the central difference at the culprit.
    blocks : list of (start, stop), optional
        The inputs of a tuple/dict ``x`` in the packed vector: the first splits.
    """
    prep, D = problem.prep, problem.directions
    n = prep.n
    v = D.vector(l, n)
    support = np.flatnonzero(v)
    # Forward differences: the step that balances truncation against round-off
    # (EPS**(1/2)), per element as large as the first pass's step allowed.
    t = float(D.step[l]) * prep.eps ** (1 / 2 - 1 / 3)
    budget = budget or 2 * max(1, int(np.ceil(np.log2(max(n, 2))))) + 8
    evals = 0
    group, dg = support, delta
    splits = [] if blocks is None else [(a, b) for a, b in blocks]
    spread = False
    while len(group) > 1 and evals < budget:
        if splits:
            parts = [group[(group >= a) & (group < b)] for a, b in splits]
            splits = []
            parts = [p for p in parts if len(p)]
            if len(parts) == 1:
                continue
        else:
            half = len(group) // 2
            parts = [group[:half], group[half:]]
        deltas, known = [], dg
        for p in parts[:-1]:
            vp = np.zeros(n)
            vp[p] = v[p]
            num = _forward(prep, vp, t, problem.contract)[r]
            exp = float(np.asarray(expected_of(vp[None, :]))[r, 0])
            evals += 1
            deltas.append(exp - num)
            known -= exp - num
        deltas.append(known)
        mags = np.abs(deltas)
        best = int(np.argmax(mags))
        spread = bool(mags[best] < _DOMINANT * mags.sum())
        group, dg = parts[best], deltas[best]
        if spread:
            break  # both halves are wrong: a whole block, not an entry
    # The culprit's own entry, by a central difference (two evaluations).
    if len(group) == 1 and not spread:
        j = int(group[0])
        h = float(h_coord[j])
        F = values(prep, coordinate_block([j], np.array([h], dtype=prep.x0.dtype)), (-1.0, 1.0))
        num = (np.asarray(F[1, 0], np.float64) - np.asarray(F[0, 0], np.float64)) / (2 * h)
        num = num if problem.contract is None else problem.contract @ num
        e = np.zeros(n)
        e[j] = 1.0
        evals += 2
        return Found(r, group, float(np.asarray(expected_of(e[None, :]))[r, 0]), float(num[r]),
                     False, evals)
    return Found(r, group, float("nan"), float("nan"), spread, evals)
