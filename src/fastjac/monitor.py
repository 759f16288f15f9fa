"""Gradient sanity checks inside a training loop: :class:`GradientMonitor`.

Call the monitor once per training step with the parameters, the gradients
your backward pass produced and, ideally, the loss value it computed.  Every
step it screens for NaN and inf; every ``every`` steps it checks the
gradients against finite differences of the loss along a few whole-vector
directions and at a few sampled coordinates, all evaluated in one batched
stream through the engine.  When a check fails it names the parameter, the
relative error and the step.

The monitor proper lives here: the schedule (``every``, ``budget``), the
screen, the history and the summary.  The checks themselves (directions,
the round-off probe, second opinions, the culprit search) are in
:mod:`fastjac._linecheck`; the reports in :mod:`fastjac._monitor_report`.

The monitor never modifies ``params`` or ``grads``: it packs a private copy
of the parameters and hands ``loss_fn`` read-only perturbed copies.
"""
from __future__ import annotations

import logging
import math
import time
import warnings

import numpy as np

from ._linecheck import (STEP_POWER, CheckState, build_directions, dot64, prepare_loss,
                         run_check, sample_coordinates)
from ._monitor_params import (SWEEP_STEPS, FlatLoss, check_loss_value, layout_of,
                              nonfinite_counts, sweep_finds_nonfinite)
from ._monitor_report import CheckRecord, Entry, MonitorReport, make_report, summarize
from ._validate import check_choice, check_int, describe
from .steps import eps_for
from .tolerances import monitor_rtol

__all__ = ["GradientMonitor", "GradientWarning", "GradientCheckError", "MonitorReport",
           "CheckRecord", "DEFAULT_EVERY"]

logger = logging.getLogger("fastjac.monitor")

#: Default check period in steps.  Measured on the 1M-parameter softmax layer
#: and the 512x512 least-squares layer of ``benchmarks/bench_monitor.py``
#: (batch 64, one BLAS thread, paired rounds), a check costs as much as 11-15
#: training steps, so every 1000 steps is 1.1-1.5% of training time; a bug is
#: reported within 1000 steps, and ``budget=`` adapts the period to a time
#: share instead.
DEFAULT_EVERY = 1000

_ON_FAIL = ("raise", "warn")
_VECTORIZED = ("auto", True, False)


class GradientWarning(UserWarning):
    """Issued by :class:`GradientMonitor` with ``on_fail="warn"``."""


class GradientCheckError(AssertionError):
    """Raised by :class:`GradientMonitor` with ``on_fail="raise"``; ``.report`` holds the report."""

    def __init__(self, report):
        super().__init__(str(report))
        self.report = report


def _count(value, name, minimum):
    """An int >= ``minimum`` (bools refused), with the monitor's wording."""
    try:
        return check_int(value, name, minimum)
    except ValueError:
        what = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"`{name}` must be {what}; got {value!r}.") from None


def _fraction(value, name, what, low_open):
    ok = value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)
                           and (0 < value < 1 if low_open else 0 <= value < 1))
    if not ok:
        raise ValueError(f"`{name}` must be {what} or None; got {value!r}.")
    return value


def gradient_norms(layout, grads):
    """``(norms, bad)``: ``||g||`` per array, and ``{name: NaN/inf count}`` for bad ones.

    ``g . g`` is finite iff every element is (barring overflow of the
    squares, which ``np.isfinite`` then rules out): one BLAS read of each
    gradient, the fastest full read measured (0.6x ``np.isfinite(g).all()``
    in float32, 0.8x in float64), and it gives the norms that balance the
    check's directions.
    """
    norms, bad = [], {}
    with np.errstate(over="ignore", invalid="ignore"):
        for name, g in zip(layout.names, grads):
            sq = float(np.vdot(g, g)) if g.size else 0.0
            norms.append(math.sqrt(sq) if math.isfinite(sq) else float("inf"))
            if not math.isfinite(sq):
                n_bad = g.size - int(np.count_nonzero(np.isfinite(g)))
                if n_bad:
                    bad[name] = n_bad
    return norms, bad


def _notes(counts, where, what=""):
    return [f"{what}{k} holds {n} NaN/inf value(s){where}" for k, n in counts.items()]


def screen(step, layout, parrs, garrs, loss, due, sweep):
    """``(norms, found)``: the NaN/inf screen of one step.

    What it reads, by case:

    - ``loss`` given and finite, no check due: on every ``SWEEP_STEPS``-th
      step (``sweep``) every parameter, once (the sweep), else nothing;
    - ``loss`` not given, or a check due: every gradient, once (``g . g``,
      whose norms the check uses: ``norms``, else None);
    - ``loss`` not finite, or the sweep found something: every gradient and
      parameter, to name those that hold NaN/inf.

    ``found`` is None, or ``(culprits, notes)``.
    """
    if loss is not None and math.isfinite(loss) and not due:
        if not sweep or not sweep_finds_nonfinite(parrs):
            return None, None
        held = nonfinite_counts(layout, parrs)
        notes = _notes(held, " (found by the parameter sweep: the loss stayed finite, so a "
                             "function such as tanh absorbs it)")
    elif loss is None or math.isfinite(loss):
        norms, bad = gradient_norms(layout, garrs)
        return norms, (list(bad), _notes(bad, "", "the gradient of ")) if bad else None
    else:
        held = nonfinite_counts(layout, parrs)
        notes = [f"the loss at step {step} is {loss}"] + _notes(held, "")
    bad = nonfinite_counts(layout, garrs)
    notes += _notes(bad, "", "the gradient of ")
    culprits = list(dict.fromkeys([*held, *bad]))
    if not culprits:
        notes.append("no parameter or gradient holds NaN/inf: the data or the loss itself is "
                     "not finite")
    return None, (culprits, notes)


class GradientMonitor:
    """Check the gradients of a training loop while it runs.

    Parameters
    ----------
    loss_fn : callable or None
        ``loss_fn(params) -> float``: the loss at ``params``, a container
        like the one passed to the monitor (dict or tuple of arrays).  If it
        also accepts a batch (every array with a leading axis of size ``k``)
        and returns shape ``(k,)``, the perturbed points are evaluated in
        batched calls (found out once and verified, as ``vectorized="auto"``
        does).  May be None if every call passes ``loss_fn=``.
    every : int, optional
        Check every ``every`` steps (the first call is always checked).
        Default :data:`DEFAULT_EVERY` = 1000: a check costs about 11-15
        training steps of a dense layer, 1.1-1.5% of training time at that
        period (see ``docs/monitor.md``).  With ``budget`` it is the
        starting value.
    directions : int, optional
        Whole-vector directions per check (default 2): the first aligned
        with the gradient, the others random signs, each balanced so every
        parameter contributes equally.  Each costs 2 evaluations of ``loss_fn``.
    samples : int, optional
        Sampled coordinates per check (default 2), spread over the
        parameters; each costs 2 evaluations.  A coordinate carries little
        signal in float32 (its check is then reported as ``'noise'``).
    rtol : float, optional
        Relative tolerance on top of the error model.  Default
        :data:`fastjac.tolerances.MONITOR_RTOL`: 1e-3 for float64
        parameters, 1e-2 for float32.
    on_fail : {'warn', 'raise'} or callable, optional
        ``'warn'`` issues a :class:`GradientWarning`, ``'raise'`` raises
        :class:`GradientCheckError` (an AssertionError carrying ``.report``),
        a callable is called with the :class:`MonitorReport`.
    seed : int, optional
        Seed of the random directions and coordinates.
    budget : float, optional
        Fraction of training time the checks may take (e.g. 0.02): ``every``
        becomes ``ceil(check_time / (budget * step_time))``, from the
        measured step time (wall time between calls, minus the monitor's).
    vectorized : {'auto', True, False}, optional
        Whether ``loss_fn`` takes a batch, as in :func:`fastjac.jacobian`.

    Attributes
    ----------
    history : list of CheckRecord
        One record per check and per non-finite screen: ``step``, ``kind``,
        ``rel_error``, ``per_param``, ``passed``, ``verdict``, ``seconds``.
    every : int
        The current check period.

    Notes
    -----
    **Screen.**  With ``loss=`` (the loss value the step computed) the
    screen is ``isfinite(loss)``: a NaN or inf in a gradient reaches the
    parameters with the update and so the next loss, and is reported
    *within one step*; one the loss absorbs (``tanh(inf) = 1``) stays in the
    parameters, which every ``SWEEP_STEPS`` = 16th step reads, so it is
    reported *within 16 steps*.  The other steps read and validate nothing.
    Without ``loss=`` every gradient is read *every step* (``g . g``), which
    costs 6-8% of a 1-7 ms step of a memory-bound layer.  Check steps read
    every gradient either way; a non-finite loss makes the monitor read
    every gradient and parameter to name those that hold NaN/inf.

    **Check.**  For a direction ``d`` the numeric value is
    ``N = (L(x + d) - L(x - d)) / 2`` and the prediction
    ``A = grads . (d - m) / 2``, with ``d``, ``m`` the steps really taken in
    the parameters' dtype.  It passes if ``|A - N| <= rtol * max(|A|, |N|) +
    noise``, where the noise covers the loss's round-off (modelled, and
    measured by a probe at a thousandth of the step), the truncation bound
    from the same evaluations (which also covers a ReLU kink), and the
    gradient's own rounding.  A failure is measured again at a quarter and
    at four times the step, and downgraded to ``'noise'`` if it shrinks; a
    failed direction is then checked one parameter at a time to name the
    culprits.  ``docs/monitor.md`` gives the formulas and measurements.

    **Same mini-batch.**  The check must use the batch the gradient was
    computed on: pass ``loss_fn=lambda p: loss(p, xb, yb)`` per call, or a
    ``loss_fn`` that reads the current batch from a holder you update.

    Examples
    --------
    >>> import numpy as np, fastjac
    >>> X = np.linspace(-1, 1, 20); Y = 3 * X + 1
    >>> def loss(p, X=X, Y=Y):
    ...     return np.mean((p["w"] * X + p["b"] - Y) ** 2)
    >>> def grads(p):
    ...     r = p["w"] * X + p["b"] - Y
    ...     return {"w": np.array(2 * np.mean(r * X)), "b": np.array(2 * np.mean(r))}
    >>> mon = fastjac.GradientMonitor(loss, every=10, seed=0)
    >>> p = {"w": np.array(0.5), "b": np.array(0.0)}
    >>> for step in range(30):
    ...     g = grads(p)
    ...     _ = mon(step, p, g, loss=loss(p))
    ...     p = {k: p[k] - 0.1 * g[k] for k in p}
    >>> [r.passed for r in mon.history]
    [True, True, True]
    """

    def __init__(self, loss_fn, *, every=DEFAULT_EVERY, directions=2, samples=2, rtol=None,
                 on_fail="warn", seed=None, budget=None, vectorized="auto"):
        if loss_fn is not None and not callable(loss_fn):
            raise TypeError(f"`loss_fn` must be callable or None; got {describe(loss_fn)}.")
        self.every = _count(every, "every", 1)
        self.directions = _count(directions, "directions", 0)
        self.samples = _count(samples, "samples", 0)
        if self.directions + self.samples == 0:
            raise ValueError("`directions` and `samples` cannot both be 0: nothing would be checked.")
        self.rtol = _fraction(rtol, "rtol", "a number in [0, 1)", low_open=False)
        if not (callable(on_fail) or on_fail in _ON_FAIL):
            raise ValueError(f"`on_fail` must be one of {sorted(_ON_FAIL)} or a callable; "
                             f"got {on_fail!r}.")
        self.budget = _fraction(budget, "budget", "a fraction in (0, 1)", low_open=True)
        self.vectorized = check_choice(vectorized, "vectorized", _VECTORIZED)
        self.loss_fn, self.on_fail = loss_fn, on_fail
        self.rng = np.random.default_rng(seed)
        self.seed = seed if isinstance(seed, (int, np.integer)) else None  # for the reports
        self.history: list = []
        self._layout = self._flat = self._norms = None
        self._last_check = self._last_end = self._step_time = None  # _step_time: EMA of a step
        self._steps_seen = 0
        self._train_seconds = self._check_seconds = self._screen_seconds = 0.0

    def __call__(self, step, params, grads, *, loss_fn=None, loss=None):
        """Screen for NaN/inf and, when due, check ``grads`` against ``loss_fn``.

        Parameters
        ----------
        step : int
        params, grads : dict or tuple of ndarray
            Matching containers; never modified.
        loss_fn : callable, optional
            Overrides the monitor's ``loss_fn`` for this call (e.g. a closure
            over the current mini-batch).
        loss : float, optional
            The loss value this step computed at ``params``.  Given, the
            screen reads nothing while it is finite (NaN/inf reported
            within one step); omitted, every gradient is read every step.

        Returns
        -------
        MonitorReport or None
            The report of this step's check or screen, None if nothing ran.
        """
        t_enter = time.perf_counter()
        if self._last_end is not None:
            dt = t_enter - self._last_end
            self._train_seconds += dt
            self._step_time = dt if self._step_time is None else 0.8 * self._step_time + 0.2 * dt
        seen = self._steps_seen
        self._steps_seen = seen + 1
        sweep = seen % SWEEP_STEPS == 0
        if (not sweep and isinstance(loss, float) and math.isfinite(loss)
                and type(step) is int and self._last_check is not None
                and step - self._last_check < self.every):
            # A finite loss, no check due, the sweep resting: nothing to read or
            # validate (the next step that reads does), so nothing is done.
            self._last_end = time.perf_counter()
            return None
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
            raise TypeError(f"`step` must be an int; got {describe(step)}.")
        step, loss = int(step), check_loss_value(loss)
        layout, parrs, garrs = self._layout_for(params, grads)
        due = self._last_check is None or step - self._last_check >= self.every
        report = self._screen(step, layout, parrs, garrs, loss, due, sweep)
        if report is None and due:
            fn = self.loss_fn if loss_fn is None else loss_fn
            if fn is None or not callable(fn):
                raise TypeError("`loss_fn` must be callable: pass it to GradientMonitor(...) or "
                                f"to this call; got {describe(fn)}.")
            report = self._check(step, layout, params, parrs, garrs, fn)
        if report is not None and not report.passed:
            self._fail(report)
        self._last_end = time.perf_counter()
        return report

    def summary(self):
        """Counts (checks and non-finite screens apart), errors and overhead so far:
        a dict whose ``str`` reads well."""
        return summarize(self.history, steps_seen=self._steps_seen, every=self.every,
                         check_seconds=self._check_seconds, screen_seconds=self._screen_seconds,
                         train_seconds=self._train_seconds)

    # -- internals ----------------------------------------------------------
    def _layout_for(self, params, grads):
        layout, parrs, garrs = layout_of(params, grads)
        if self._layout is not None and layout is not self._layout and \
                layout.signature() != self._layout.signature():
            # A changed model is allowed, but say so: history spans both.
            logger.info("parameters changed structure: %s", layout.signature())
        self._layout = layout
        return layout, parrs, garrs

    def _screen(self, step, layout, parrs, garrs, loss, due, sweep):
        """The NaN/inf screen (see :func:`screen`); a report if something is not finite."""
        t0 = time.perf_counter()
        norms, found = screen(step, layout, parrs, garrs, loss, due, sweep)
        self._norms = norms or self._norms
        self._screen_seconds += time.perf_counter() - t0
        return None if found is None else self._nan_report(step, layout, *found, t0)

    def _nan_report(self, step, layout, culprits, notes, t0):
        entries = [Entry.nonfinite(k, None, "screen") for k in culprits or ["loss"]]
        per_param = {k: float("inf") for k in culprits}
        seconds = time.perf_counter() - t0
        report = make_report(step, entries, max_rel=float("inf"), per_param=per_param,
                             culprits=culprits, nfev=0, seconds=seconds, notes=notes, rtol=0.0,
                             dtype=layout.dtype, step_size=0.0, seed=self.seed)
        self.history.append(CheckRecord(step, "nan", float("inf"), False, "nan", seconds,
                                        dict(per_param), list(culprits), self.every))
        return report

    def _flat_loss(self, fn, layout):
        """One :class:`FlatLoss` per ``loss_fn`` and layout, so its engine plan is found again."""
        flat = self._flat
        if flat is None or flat.loss_fn is not fn or flat.layout.signature() != layout.signature():
            flat = self._flat = FlatLoss(fn, layout)
        return flat

    def _check(self, step, layout, params, parrs, garrs, fn):
        t0 = time.perf_counter()
        try:
            prep = prepare_loss(self._flat_loss(fn, layout), layout.pack(params), self.vectorized)
        except ValueError:
            held = nonfinite_counts(layout, parrs)
            if not held:
                raise
            return self._nan_report(step, layout, list(held),
                                    _notes(held, ": the loss cannot be checked there"), t0)
        x0, tau = prep.x0, eps_for(layout.dtype) ** STEP_POWER
        # The screen's norms; a float32 g . g that overflowed is redone in float64.
        norms = [nm if math.isfinite(nm) else math.sqrt(dot64(g, g))
                 for nm, g in zip(self._norms, garrs)]
        dirs = build_directions(layout, x0, garrs, norms, self.directions, tau, self.rng)
        coords = sample_coordinates(layout, x0, self.samples, tau, self.rng)
        ldtype = prep.fx.dtype if prep.fx.dtype.kind == "f" else np.float64
        state = CheckState(prep, layout, garrs, self.rtol if self.rtol is not None else
                           monitor_rtol(layout.dtype),
                           eps_g=max(eps_for(g.dtype if g.dtype.kind == "f" else np.float64)
                                     for g in garrs),
                           eps_l=eps_for(layout.dtype, ldtype))
        found = run_check(state, dirs, coords)
        seconds = time.perf_counter() - t0
        fallback = None
        if prep.fallback is not None:
            fallback = ("`loss_fn` could not be evaluated on a batch, so it was called once per "
                        "perturbed point. To batch it, make it accept every parameter with a "
                        "leading axis of size k and return shape (k,); the monitor verifies "
                        "the batch against single calls.")
        report = make_report(step, found.entries, max_rel=found.max_rel,
                             per_param=found.per_param, culprits=found.culprits, nfev=prep.nfev,
                             seconds=seconds, notes=found.notes, rtol=state.rtol,
                             dtype=layout.dtype, step_size=tau, seed=self.seed, fallback=fallback)
        self.history.append(CheckRecord(step, "check", found.max_rel, report.passed,
                                        report.verdict, seconds, dict(found.per_param),
                                        list(found.culprits), self.every))
        self._after_check(step, seconds)
        return report

    def _fail(self, report):
        if callable(self.on_fail):
            self.on_fail(report)
        elif self.on_fail == "raise":
            raise GradientCheckError(report)
        else:
            warnings.warn(str(report), GradientWarning, stacklevel=3)

    def _after_check(self, step, seconds):
        self._check_seconds += seconds
        self._last_check = step
        st = self._step_time
        if self.budget is not None and st:
            self.every = max(1, math.ceil(seconds / (self.budget * st)))
        if st:
            cost = seconds / st
            level = logging.INFO if cost > 1.0 else logging.DEBUG
            logger.log(level, "gradient check at step %d took %.3g s (%.1f training steps); "
                       "checking every %d steps costs about %.2f%% of training time",
                       step, seconds, cost, self.every, 100.0 * cost / self.every)
