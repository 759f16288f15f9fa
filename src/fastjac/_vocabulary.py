"""One vocabulary for every report: entry statuses, their codes, and verdicts.

Each compared entry gets a status, stored as a small integer code (an
``int8`` array the size of what was compared, never Python strings); the
verdict of a check is the most severe status present, read off the codes
with one ``bincount``.  The checks, the monitor and the pytest plugin all
speak this vocabulary.
"""
from __future__ import annotations

import numpy as np

__all__ = ["STATUSES", "STATUS_CODES", "STATUS_NAMES", "VERDICTS", "verdict_of", "counts_of",
           "code", "PASSING_STATUSES"]

#: Status -> what it means, in increasing severity (the code is the position).
STATUSES = {
    "ok": "within tolerance",
    "noise": "outside tolerance but within finite-difference noise (by the error model, or "
             "confirmed by a second estimate at a smaller step)",
    "non-differentiable": "f has a kink within the step; the expected value lies between "
                          "the one-sided slopes",
    "discontinuous": "f jumps within the step; the expected value matches the slope on one "
                     "side of the jump",
    "inconclusive": "the estimates at two steps disagree far beyond their noise: f is "
                    "ill-conditioned at this step and dtype, so nothing can be concluded",
    "bug": "mismatch confirmed by a second estimate: likely a wrong derivative",
    "nan": "NaN or inf in f, in the expected value or in the numeric estimate",
}
STATUS_NAMES = tuple(STATUSES)
STATUS_CODES = {name: np.int8(i) for i, name in enumerate(STATUS_NAMES)}
PASSING_STATUSES = ("ok", "noise", "non-differentiable", "discontinuous")

#: Verdict -> whether it passes, in order of precedence (the first that applies wins).
VERDICTS = {
    "nan": False,
    "non-deterministic": False,
    "fail": False,
    "inconclusive": False,
    "discontinuous": True,
    "non-differentiable": True,
    "noise": True,
    "pass": True,
}

# The verdict each status leads to.
_VERDICT_OF_STATUS = {"ok": "pass", "noise": "noise", "non-differentiable": "non-differentiable",
                      "discontinuous": "discontinuous", "inconclusive": "inconclusive",
                      "bug": "fail", "nan": "nan"}


def code(name: str) -> np.int8:
    return STATUS_CODES[name]


def counts_of(codes) -> dict:
    """``{status: count}`` from an array of codes (one pass)."""
    tally = np.bincount(np.asarray(codes, dtype=np.int8).ravel().astype(np.intp),
                        minlength=len(STATUS_NAMES))
    return {name: int(tally[i]) for i, name in enumerate(STATUS_NAMES)}


def verdict_of(counts: dict) -> str:
    """The most severe status present decides."""
    for name in reversed(STATUS_NAMES):
        if counts.get(name):
            return _VERDICT_OF_STATUS[name]
    return "pass"
