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

from .._engine import readonly
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
        self.out_shape, self.out_dtype = prep.out_shape, prep.fx.dtype
        self.rtol, self.atol, self.user_atol = st.tol.rtol, st.tol.atol, st.user_atol
        self.dtype_name, self.method_name = st.dtype, st.method_name
        self.eps, self.stencil = prep.eps, prep.stencil
        self.S = prep.stencil.evaluations_per_column
        self.notes = list(notes)
        self.out_label, self.in_label = out_label, in_label
        # The determinism guard's allowance for a batched x against a single call.
        self.batch_tol = 8 * prep.eps ** (2 / 3)

    def __call__(self, f, x, E):
        """``(report, f0, points)``; on a miss the report is None (see ``warm_check``)."""
        t_start = time.perf_counter()
        if type(E) is not np.ndarray or E.size != self.m * self.n:
            return None, None, 0
        y = f(readonly(x))
        if isinstance(y, np.generic):
            y = np.asarray(y)  # a scalar loss
        if type(y) is not np.ndarray or y.shape != self.out_shape or y.dtype != self.out_dtype:
            return None, y, 1
        fx = y.copy()  # f may reuse its output buffer in the batch below
        fxf = fx.reshape(-1)
        if not math.isfinite(fxf.dot(fxf)):
            return None, fx, 1
        got = self.fp(x, f)
        if got is None:
            return None, fx, 1 + self.fp.evaluated
        JT, center, h = got
        spent = 1 + self.fp.rows
        if not (center == fxf).all():
            scale = max(1.0, float(np.max(np.abs(fxf), initial=0.0)))
            if not np.all(np.abs(center - fxf) <= self.batch_tol * scale):
                return None, fx, spent
        ET = E.reshape(self.m, self.n).T
        absE = np.abs(ET)
        emax = float(absE.max(initial=0.0))
        if not math.isfinite(emax):
            return None, fx, spent
        atol, notes = self.atol, self.notes
        if not self.user_atol and self.rtol * emax < atol:
            return None, fx, spent  # small derivatives: the general path scales atol (and says so)
        absE *= self.rtol
        absE += atol
        err = np.subtract(JT, ET)
        np.abs(err, out=err)
        if not (err <= absE).all():
            return None, fx, spent
        J = JT.T.reshape(self.report_shape)
        expected = E.reshape(self.report_shape)
        fs = SimpleNamespace(fx=fx, eps=self.eps, stencil=self.stencil)
        return JacobianCheck(
            passed=True, verdict="pass", numeric=J, expected=expected, nfev=spent,
            method=self.method_name, step=h.reshape(x.shape), rtol=self.rtol, atol=atol,
            dtype=self.dtype_name, kind=self.kind, notes=list(notes),
            seconds=time.perf_counter() - t_start,
            counts=lambda: {name: (self.m * self.n if name == "ok" else 0)
                            for name in STATUS_NAMES},
            **_lazy_figures(self, fs, JT, E, h, atol, x)), fx, spent


def _lazy_figures(fc, fs, JT, E, h, atol, x):
    """The general path's figures, computed from this call's arrays when read."""
    from .judging import Judgement, figures, noise_array, worst

    def problem():
        scale = np.maximum(1.0, np.abs(np.asarray(x, np.float64).reshape(-1)))
        return Problem(fs, JT.T, E.reshape(fc.m, fc.n), atol, fc.rtol,
                       Directions(step=np.asarray(h, np.float64), index=np.arange(fc.n),
                                  scale=scale), fc.out_label, fc.in_label)

    once = {}

    def figs():
        if "figs" not in once:
            once["figs"] = figures(problem())
        return once["figs"]

    ok = Judgement(None, {}, "pass")
    return dict(error_norm=lambda: figs()[0], max_abs_error=lambda: figs()[1],
                max_rel_error=lambda: figs()[2], worst=lambda: worst(problem(), ok),
                noise=lambda: noise_array(problem()).reshape(fc.report_shape),
                status=lambda: np.full(fc.report_shape, "ok", dtype=object))
