"""The warm path of a small full check: ``f(x)``, one batch, a few numpy operations.

A test suite checks the same small function many times, and the notebook's
checks have 3-12 inputs: there a check must cost about what the notebook's
own loop costs.  After a full check has run once through the general path
and its plan has a fast path (one batch that also evaluates ``x`` itself),
a :class:`FastCheck` replays it: ``f(x)`` (the guard for NaN and the first
of the two evaluations the determinism guard compares), the fast path's
batch, and one comparison.  Only a check where every entry is within its
tolerance is answered here; anything else (a flag, a NaN, a changed shape,
another dtype) returns None and the general path runs, second opinions and
all.  The report it returns is the one the general path would return for a
pass: its figures are computed when first read.
"""
from __future__ import annotations

import math
import time
from types import SimpleNamespace

import numpy as np

from .._memo import FunctionMemo
from .._vocabulary import STATUS_NAMES
from ..report import JacobianCheck
from .problem import Directions, Problem

__all__ = ["FastCheck", "lookup", "remember"]

_CHECKS = FunctionMemo()


def _key(x, E, kind, method, order, vectorized, rtol, atol):
    return (x.shape, x.dtype.str, E.shape, E.dtype.str, kind, method, order, vectorized, rtol,
            atol)


def lookup(f, x, E, kind, method, order, vectorized, rtol, atol):
    if type(x) is not np.ndarray or type(E) is not np.ndarray:
        return None
    return _CHECKS.get(f, _key(x, E, kind, method, order, vectorized, rtol, atol))


def remember(f, x, E, st, report_shape, notes, out_label, in_label, rtol, atol):
    """Keep a fast check for this call's layout, if its plan has a fast path.

    ``rtol``/``atol`` are the caller's arguments (None for the table's)."""
    from .._engine import fast_lookup

    if type(x) is not np.ndarray or type(E) is not np.ndarray or st.prep.spec is not None:
        return
    fp = fast_lookup(f, x, st.method, st.order, st.prep.vectorized, center=True)
    if fp is None:
        return
    fc = FastCheck(fp, st, report_shape, notes, out_label, in_label)
    _CHECKS.set(f, _key(x, E, st.kind, st.method, st.order, st.prep.vectorized, rtol, atol), fc)


class FastCheck:
    """One full check's layout, replayed on a new point and expected value."""

    def __init__(self, fp, st, report_shape, notes, out_label, in_label):
        prep = st.prep
        self.fp, self.kind, self.report_shape = fp, st.kind, tuple(report_shape)
        self.m, self.n = prep.m, prep.n
        self.out_shape = prep.out_shape
        self.rtol, self.atol, self.user_atol = st.tol.rtol, st.tol.atol, st.user_atol
        self.dtype_name, self.method_name = st.dtype, st.method_name
        self.eps, self.stencil = prep.eps, prep.stencil
        self.notes = tuple(notes)
        # The fields every warm pass of this layout shares, in JacobianCheck's types.
        self.fields = dict(passed=True, verdict="pass", method=self.method_name,
                           rtol=float(self.rtol), dtype=self.dtype_name, kind=self.kind,
                           seed=None, fallback=None, status_codes=None)
        self.out_label, self.in_label = out_label, in_label

    def __call__(self, f, x, E):
        """``(report, f0, points)``; on a miss the report is None (see ``warm_check``).

        Only a pass is answered here, so the lone call ``f(x)`` of the general
        path's determinism guard is left out: the batch's own centre row stands
        for ``f(x)``.  Whatever that guard would catch (an ``f`` that became
        random, or mixes the points of a batch) moves the estimate away from a
        correct ``E``; the mismatch sends the check to the general path, which
        runs every guard on a fresh ``f(x)``.  A warm pass costs one batch.
        """
        t_start = time.perf_counter()
        if type(E) is not np.ndarray or E.size != self.m * self.n:
            return None, None, 0
        got = self.fp(x, f)
        if got is None:
            return None, None, self.fp.evaluated
        JT, center, h = got
        spent = self.fp.rows
        if not math.isfinite(center.dot(center)):
            return None, None, spent  # f(x) is NaN or inf: the general path says where
        if self.m * self.n <= SMALL_ENTRIES and E.dtype is _F64 and JT.dtype is _F64:
            atol = _within_small(JT, E, self.m, self.n, self.rtol, self.atol, self.user_atol)
        else:
            atol = _within(JT, E, self.m, self.n, self.rtol, self.atol, self.user_atol)
        if atol is None:
            return None, None, spent
        report_shape = self.report_shape
        fx = center.reshape(self.out_shape)
        fields = dict(self.fields, numeric=JT.T.reshape(report_shape),
                      expected=E.reshape(report_shape), nfev=spent, step=h.reshape(x.shape),
                      atol=float(atol), notes=list(self.notes), diagnoses=[],
                      seconds=time.perf_counter() - t_start)
        return JacobianCheck.from_fields(
            fields, _Figures(self, fx, JT, E, h, atol, x).as_kwargs()), fx, spent


_F64 = np.dtype(np.float64)


#: Up to this many float64 entries, the comparison runs on Python floats
#: (the same double arithmetic, without a ufunc call per step).
SMALL_ENTRIES = 64


def _within_small(JT, E, m, n, rtol, atol, user_atol):
    """:func:`_within` on Python floats, in one pass."""
    jt, e = JT.tolist(), E.reshape(m, n).tolist()
    emax = 0.0
    for i, row in enumerate(e):
        for j, b in enumerate(row):
            ab = abs(b)
            if not (ab < math.inf and abs(jt[j][i] - b) <= atol + rtol * ab):  # NaN fails too
                return None
            if ab > emax:
                emax = ab
    if not user_atol and rtol * emax < atol:
        return None
    return atol


#: Entries per chunk of the comparison: a chunk's temporaries stay in cache.
_CHUNK = 1 << 15


def _within(JT, E, m, n, rtol, atol, user_atol):
    """The ``atol`` used when every entry of ``JT`` (n, m) is within tolerance of
    ``E`` (m x n entries), else None (then the general path judges).  Small
    derivatives go to the general path too: it scales ``atol`` and says so.

    In chunks of columns: ``E[:, c0:c1]`` is read in row segments and
    ``JT[c0:c1]`` is contiguous, so neither side is walked across a 32 MB
    matrix with a stride (a whole-matrix comparison of ``JT`` with the
    transposed ``E`` took longer than the evaluations of f).
    """
    E2 = E.reshape(m, n)
    step = max(1, _CHUNK // max(1, m))
    emax = 0.0
    for c0 in range(0, n, step):
        e = E2[:, c0:c0 + step]                 # (m, b)
        lim = np.abs(e)
        top = float(lim.max(initial=0.0))
        if not math.isfinite(top):
            return None
        emax = max(emax, top)
        lim *= rtol
        lim += atol
        err = np.subtract(JT[c0:c0 + step].T, e)
        np.abs(err, out=err)
        if not (err <= lim).all():
            return None
    if not user_atol and rtol * emax < atol:
        return None
    return atol


class _Figures:
    """The general path's figures of a passed fast check, computed from this
    call's arrays when first read (a test suite reads none of them)."""

    __slots__ = ("fc", "fx", "JT", "E", "h", "atol", "x", "_figs")

    def __init__(self, fc, fx, JT, E, h, atol, x):
        self.fc, self.fx, self.JT, self.E, self.h, self.atol, self.x = fc, fx, JT, E, h, atol, x
        self._figs = None

    def problem(self):
        fc = self.fc
        fs = SimpleNamespace(fx=self.fx, eps=fc.eps, stencil=fc.stencil)
        scale = np.maximum(1.0, np.abs(np.asarray(self.x, np.float64).reshape(-1)))
        return Problem(fs, self.JT.T, self.E.reshape(fc.m, fc.n), self.atol, fc.rtol,
                       Directions(step=np.asarray(self.h, np.float64), index=np.arange(fc.n),
                                  scale=scale), fc.out_label, fc.in_label)

    def figures(self):
        if self._figs is None:
            from .judging import figures

            self._figs = figures(self.problem())
        return self._figs

    def as_kwargs(self):
        return dict(error_norm=self.error_norm, max_abs_error=self.max_abs_error,
                    max_rel_error=self.max_rel_error, worst=self.worst, noise=self.noise,
                    status=self.status, counts=self.counts)

    def error_norm(self):
        return self.figures()[0]

    def max_abs_error(self):
        return self.figures()[1]

    def max_rel_error(self):
        return self.figures()[2]

    def worst(self):
        from .judging import Judgement, worst

        return worst(self.problem(), Judgement(None, {}, "pass"))

    def noise(self):
        from .judging import noise_array

        return noise_array(self.problem()).reshape(self.fc.report_shape)

    def status(self):
        return np.full(self.fc.report_shape, "ok", dtype=object)

    def counts(self):
        total = self.fc.m * self.fc.n
        return {name: (total if name == "ok" else 0) for name in STATUS_NAMES}
