"""Gradient sanity checks inside a training loop: :class:`GradientMonitor`.

Call the monitor once per training step with the parameters and the
gradients your backward pass produced.  Every step it screens the gradients
for NaN and inf (one reduction per array); every ``every`` steps it checks
them against finite differences of the loss along a few whole-vector
directions and at a few sampled coordinates, all evaluated in one batched
stream through the engine (:func:`fastjac.engine.jacobian_with_info`).
When a check fails it names the parameter, the relative error and the step.

The monitor never modifies ``params`` or ``grads``: it packs a private copy
of the parameters and hands ``loss_fn`` read-only perturbed copies.
"""
from __future__ import annotations

import logging
import math
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from .report import JacobianCheck, Mismatch
from ._validate import describe, working_dtype
from ._engine import readonly
from .steps import eps_for

__all__ = ["GradientMonitor", "GradientWarning", "GradientCheckError", "MonitorReport",
           "CheckRecord", "DEFAULT_EVERY"]

logger = logging.getLogger("fastjac.monitor")

#: Default check period in steps.  Measured on the 1M-parameter softmax
#: layer of ``benchmarks/bench_monitor.py`` (batch 64, one BLAS thread, paired
#: rounds): the per-step NaN/inf screen alone costs 2.8-4.2% (one read of the
#: gradient from memory), and a check costs as much as 10-17 training steps,
#: so checks every 500 steps added another 2-3% (total 1.054-1.065x, over
#: the 5% target).  Every 1000 steps halves the checks' share; a bug is
#: reported within 1000 steps, and ``budget=`` adapts the period to a time
#: share instead.
DEFAULT_EVERY = 1000

# Evaluation error of one loss value, in units of EPS * |loss|: a loss is a
# reduction over a batch of products (pairwise summation keeps the error at
# a few ulps times log2 of the terms), so 32 ulps covers batches of ~1e4
# terms with a safety factor of 2.
_LOSS_ULPS = 32
# The round-off probe (see GradientMonitor._measure_with_probe): a step of a
# thousandth of the gradient direction's, and a factor 4 on what it measures
# (one sample of a noise whose amplitude it estimates).
_PROBE_FRACTION = 1e-3
_PROBE_SAFETY = 4.0


def _status(err, tolerance, noise):
    """``pass`` within tolerance, ``noise`` within tolerance plus noise, else ``fail``."""
    if err <= tolerance:
        return "pass"
    if err <= tolerance + noise:
        return "noise"
    return "fail"
# Rounding of the analytic gradient itself (backprop sums products over the
# batch), in units of EPS * sum_i |g_i d_i|.
_GRAD_ULPS = 32
# Relative step of the whole-vector directions and of the sampled coordinates:
# EPS**(1/3), the engine's central-difference step.  sqrt(EPS) would minimize
# the verdict's round-off + curvature allowance in theory, but in float32 it
# buried the signal of a random direction in loss round-off (measured on a
# 1M-parameter softmax layer: signal/noise ~1 at sqrt(EPS), ~10 at EPS**(1/3)).
_STEP_POWER = 1 / 3
# Default rtol: a floor for what the error model does not cover.
_DEFAULT_RTOL = {np.dtype(np.float64): 1e-3, np.dtype(np.float32): 1e-2}
_ON_FAIL = ("raise", "warn")
# Perturbed copies built per call of loss_fn: at most this many parameter
# vectors (and at least 8 MiB worth), so memory stays O(size of params).
_ROWS_PER_CALL_CAP = 4
_MIN_CHUNK_BYTES = 8 << 20
# Blocks with a gradient norm below this fraction of the largest are not
# amplified further when directions are balanced across parameters.
_BALANCE_FLOOR = 1e-3


class GradientWarning(UserWarning):
    """Issued by :class:`GradientMonitor` with ``on_fail="warn"``."""


class GradientCheckError(AssertionError):
    """Raised by :class:`GradientMonitor` with ``on_fail="raise"``; ``.report`` holds the report."""

    def __init__(self, report):
        super().__init__(str(report))
        self.report = report


@dataclass
class _Entry:
    """One compared quantity (internal): a direction or a coordinate."""

    param: str               # "params['W1']", "params[0]" or "all params"
    input_index: object      # index inside the parameter, or None for a direction
    direction: str           # "g-dir" (gradient-aligned), "rand-1", "coordinate", "screen"
    expected: float          # analytic: grads . d
    numeric: float           # (L(x + d) - L(x - d)) / 2
    abs_error: float
    rel_error: float
    tolerance: float         # rtol * max(|A|, |N|)
    noise: float             # the error model's allowance
    status: str              # "pass", "noise", "fail", "nan"

    @property
    def excess(self):
        """How many times the allowance the error is (> 1 fails)."""
        allowed = self.tolerance + self.noise
        return self.abs_error / allowed if allowed > 0 else float("inf")

    def where(self):
        if self.input_index is not None:
            return f"{self.param}[{', '.join(map(str, self.input_index))}]"
        return f"{self.param} ({self.direction})"


# Monitor statuses -> the check reports' entry statuses.
_STATUS = {"pass": "ok", "noise": "noise", "fail": "bug", "nan": "nan"}


@dataclass
class MonitorReport(JacobianCheck):
    """What one check (or NaN screen) found: a :class:`~fastjac.JacobianCheck`
    with the step, per-parameter errors and culprits.

    Attributes
    ----------
    training_step : int
        The training step checked (``step`` keeps its report meaning: the
        relative finite-difference step).
    max_rel_error : float
        Largest relative error over the whole-vector directions (the
        figure :attr:`GradientMonitor.history` records).
    per_param : dict
        Parameter name -> relative error, when computed (after a failed
        directional check, for failed coordinates, for non-finite gradients).
    culprits : list of str
        Parameters whose own check failed or whose gradient is not finite.

    ``numeric``/``expected`` hold the directional derivatives (whole-vector,
    then sampled coordinates, then per-parameter confirmations); ``worst``
    names each entry (``"params['W1'], random 1 direction"`` or
    ``"params['W1'][3, 2]"``).
    """

    training_step: int = 0
    per_param: dict = field(default_factory=dict)
    culprits: list = field(default_factory=list)

    def to_dict(self) -> dict:
        d = super().to_dict()
        d.update(training_step=self.training_step, culprits=list(self.culprits),
                 per_param={k: (float(v) if math.isfinite(v) else repr(float(v)))
                            for k, v in self.per_param.items()})
        return d

    def __str__(self) -> str:
        word = "PASS" if self.passed else "FAIL"
        head = f"gradient check at step {self.training_step}: {word} ({self.verdict})"
        if self.culprits:
            head += "; culprit: " + ", ".join(
                f"{c} (rel error {self.per_param.get(c, float('nan')):.3g})" for c in self.culprits)
        return head + "\n" + super().__str__()

    def __repr__(self) -> str:
        return (f"MonitorReport(training_step={self.training_step}, passed={self.passed}, "
                f"verdict={self.verdict!r}, max_rel_error={self.max_rel_error:.3g}, culprits={self.culprits})")


def _make_report(step, entries, verdict, max_rel, per_param, culprits, nfev, seconds, notes,
                 rtol, dtype, tau):
    order = {"nan": 0, "fail": 1, "noise": 2, "pass": 3}
    ranked = sorted(entries, key=lambda e: (order[e.status], -e.rel_error))
    worst = [Mismatch((), e.where(), e.expected, e.numeric, e.abs_error, e.rel_error,
                      e.tolerance, e.noise, _STATUS[e.status]) for e in ranked]
    A = np.array([e.expected for e in entries], dtype=float)
    N = np.array([e.numeric for e in entries], dtype=float)
    status = np.array([_STATUS[e.status] for e in entries], dtype=object)
    counts = {k: int(np.sum(status == k)) for k in ("ok", "noise", "bug", "nan")}
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(A - N)
        return MonitorReport(
            passed=verdict in ("pass", "noise"), verdict=verdict, numeric=N, expected=A,
            error_norm=float(np.sqrt(np.sum(err ** 2))) if err.size else 0.0,
            max_abs_error=float(np.max(err)) if err.size else 0.0, max_rel_error=max_rel,
            worst=worst, noise=np.array([e.noise for e in entries], dtype=float), nfev=nfev,
            method="central-2", step=tau, rtol=rtol, atol=0.0, dtype=str(dtype),
            kind="grad/monitor", status=status, notes=notes, counts=counts, seconds=seconds,
            training_step=step, per_param=per_param, culprits=culprits)


@dataclass
class CheckRecord:
    """One entry of :attr:`GradientMonitor.history`."""

    step: int
    kind: str               # "check" or "nan"
    rel_error: float
    passed: bool
    verdict: str
    seconds: float
    per_param: dict = field(default_factory=dict)
    culprits: list = field(default_factory=list)
    every: int = 0


class _Summary(dict):
    """A dict whose ``str`` is a readable paragraph."""

    def __str__(self):
        s = self
        lines = [f"GradientMonitor: {s['checks']} checks over {s['steps_seen']} steps "
                 f"(every {s['every']}), {s['failures']} failed, {s['nan_events']} non-finite gradients"]
        if s["checks"]:
            lines.append(f"  rel error: last {s['last_rel_error']:.3g}, "
                         f"max {s['max_rel_error']:.3g} (at step {s['max_rel_error_step']})")
        if s["first_failure_step"] is not None:
            lines.append(f"  first failure at step {s['first_failure_step']}: "
                         f"{', '.join(s['culprits']) or 'no single parameter'}")
        if s["overhead"] is not None:
            lines.append(f"  overhead: checks took {s['check_seconds']:.3g} s, "
                         f"{100 * s['overhead']:.2f}% of measured training time")
        return "\n".join(lines)


# --------------------------------------------------------------------------
# containers
# --------------------------------------------------------------------------
def _items(container, name):
    """``[(key, label, array)]`` of a dict or tuple/list of arrays."""
    if isinstance(container, dict):
        keys = list(container)
        labels = [f"{name}[{k!r}]" for k in keys]
        values = [container[k] for k in keys]
    elif isinstance(container, (tuple, list)):
        keys = list(range(len(container)))
        labels = [f"{name}[{i}]" for i in keys]
        values = list(container)
    else:
        raise TypeError(f"`{name}` must be a dict or a tuple of arrays; got {describe(container)}.")
    if not keys:
        raise ValueError(f"`{name}` must hold at least one array; got an empty {type(container).__name__}.")
    arrays = []
    for label, v in zip(labels, values):
        a = np.asarray(v)
        if a.dtype.kind not in "biuf":
            raise TypeError(f"`{label}` must be an array of real numbers; got {describe(v)}.")
        arrays.append(a)
    return keys, labels, arrays


class _Layout:
    """Parameter names, shapes and their slices of one flat vector."""

    def __init__(self, kind, keys, labels, shapes, dtype):
        self.kind, self.keys, self.labels, self.shapes = kind, keys, labels, shapes
        self.dtype = dtype
        sizes = np.cumsum([0] + [int(np.prod(s, dtype=np.int64)) for s in shapes])
        self.bounds = [(int(sizes[i]), int(sizes[i + 1])) for i in range(len(shapes))]
        self.size = int(sizes[-1])

    def signature(self):
        return (self.kind, tuple(self.keys), tuple(self.shapes))

    def unpack(self, flat):
        """Views of ``flat`` (``(n,)`` or ``(b, n)``) in the caller's container."""
        lead = flat.shape[:-1]
        parts = [flat[..., a:b].reshape(lead + s) for (a, b), s in zip(self.bounds, self.shapes)]
        return dict(zip(self.keys, parts)) if self.kind == "dict" else tuple(parts)

    def pack(self, arrays):
        flat = np.empty(self.size, dtype=self.dtype)
        for (a, b), arr in zip(self.bounds, arrays):
            flat[a:b] = arr.reshape(-1)
        return flat

    def name(self, p):
        return self.labels[p].replace("grads", "params", 1)

    def locate(self, j):
        """``(block, index inside the parameter)`` of flat element ``j``."""
        for p, (a, b) in enumerate(self.bounds):
            if a <= j < b:
                idx = np.unravel_index(j - a, self.shapes[p]) if self.shapes[p] else ()
                return p, tuple(int(i) for i in idx)
        raise IndexError(j)


_LAYOUTS: dict = {}


def _layout_of(params, grads):
    """Validate ``params``/``grads`` and return their layout (cached per
    structure: this runs on every training step)."""
    if isinstance(params, dict) and isinstance(grads, dict) and params.keys() == grads.keys():
        try:
            key = tuple((k, v.shape, v.dtype.str, g.shape, g.dtype.str)
                        for (k, v), g in zip(params.items(), (grads[k] for k in params)))
        except AttributeError:  # not arrays: take the validating path
            key = None
        layout = _LAYOUTS.get(key) if key is not None else None
        if layout is not None:
            return layout, list(params.values()), [grads[k] for k in params]
        result = _layout_uncached(params, grads)
        if key is not None and len(_LAYOUTS) < 64:
            _LAYOUTS[key] = result[0]
        return result
    return _layout_uncached(params, grads)


def _layout_uncached(params, grads):
    keys, labels, parrs = _items(params, "params")
    kind = "dict" if isinstance(params, dict) else "tuple"
    if kind == "dict" and isinstance(grads, dict) and set(grads) == set(keys):
        grads = {k: grads[k] for k in keys}  # dict order does not matter
    gkeys, glabels, garrs = _items(grads, "grads")
    if (isinstance(grads, dict)) != (kind == "dict") or gkeys != keys:
        raise ValueError(
            f"`grads` must have the same entries as params ({keys}); got {type(grads).__name__} "
            f"with entries {gkeys}.")
    for label, p, g in zip(glabels, parrs, garrs):
        if g.shape != p.shape:
            raise ValueError(f"`{label}` must have the shape of the matching parameter "
                             f"{p.shape}; got {g.shape}.")
    dtype = np.result_type(*[working_dtype(a.dtype) for a in parrs])
    return _Layout(kind, keys, labels, tuple(a.shape for a in parrs), np.dtype(dtype)), parrs, garrs


def _dot64(a, b, absolute=False):
    """``sum(a * b)`` (or ``sum(|a * b|)``) accumulated in float64, in small chunks."""
    a, b = a.reshape(-1), b.reshape(-1)
    if a.dtype == np.float64 and b.dtype == np.float64 and not absolute:
        return float(np.dot(a, b))
    total, step = 0.0, 1 << 16
    for s in range(0, a.size, step):
        x = a[s:s + step].astype(np.float64)
        y = b[s:s + step].astype(np.float64)
        total += float(np.dot(np.abs(x), np.abs(y)) if absolute else np.dot(x, y))
    return total


# --------------------------------------------------------------------------
# the line function evaluated by the engine
# --------------------------------------------------------------------------
class _Line:
    """``F(s) = loss(x0 + sum_i s_i d_i)`` for a set of directions ``d_i``.

    The engine differentiates ``F`` at ``s = 0`` with step 1, so its stack
    rows are ``s = +-e_i`` and ``F`` evaluates ``loss(x0 +- d_i)``: one batched
    call of ``loss_fn`` per chunk of rows when ``loss_fn`` is batch-aware.
    A direction is ``("dense", i, a, b)`` (``D[i, a:b]`` added on ``a:b``) or
    ``("coord", j, h)`` (``h`` added to element ``j``).  The perturbed copies
    are read-only, so ``loss_fn`` cannot modify them.
    """

    def __init__(self, loss_fn, layout, x0, D, items, rows_per_call):
        self.loss_fn, self.layout, self.x0, self.D = loss_fn, layout, x0, D
        self.items, self.rows_per_call = items, rows_per_call

    def _fill(self, X, s):
        x0, D = self.x0, self.D
        for r in range(X.shape[0]):
            row, nz = X[r], np.flatnonzero(s[r])
            if len(nz) == 1 and abs(s[r, nz[0]]) == 1 and self.items[nz[0]][0] == "dense":
                # The usual row x0 +- d: one pass, rounded exactly as x0 + c*d.
                _, k, a, b = self.items[nz[0]]
                op = np.add if s[r, nz[0]] > 0 else np.subtract
                if a == 0 and b == x0.size:
                    op(x0, D[k], out=row)
                    continue
                row[...] = x0
                op(x0[a:b], D[k, a:b], out=row[a:b])
                continue
            row[...] = x0
            for i in nz:
                c, item = s[r, i], self.items[i]
                if item[0] == "dense":
                    _, k, a, b = item
                    row[a:b] += c * D[k, a:b]
                else:
                    row[item[1]] += c * item[2]

    def __call__(self, s):
        s = np.asarray(s)
        if s.ndim == 1:
            X = np.empty((1, self.x0.size), dtype=self.x0.dtype)
            self._fill(X, s[None])
            return self.loss_fn(self.layout.unpack(readonly(X[0])))
        out = []
        for lo in range(0, s.shape[0], self.rows_per_call):
            chunk = s[lo:lo + self.rows_per_call]
            X = np.empty((chunk.shape[0], self.x0.size), dtype=self.x0.dtype)
            self._fill(X, chunk)
            y = np.asarray(self.loss_fn(self.layout.unpack(readonly(X))))
            del X  # before the next chunk is allocated: at most one chunk alive
            if y.shape != (chunk.shape[0],):
                return y  # not batch-aware: the engine sees the wrong shape and falls back
            out.append(y)
        return np.concatenate(out)


def _code_key(fn):
    # Closures made afresh each step share their code object and so their
    # batch-awareness; remembering the engine's decision per code object
    # avoids re-probing (3 extra evaluations) on every check.
    return getattr(fn, "__code__", None) or id(fn)


# --------------------------------------------------------------------------
# the monitor
# --------------------------------------------------------------------------
class GradientMonitor:
    """Check the gradients of a training loop while it runs.

    Parameters
    ----------
    loss_fn : callable or None
        ``loss_fn(params) -> float``: the loss at ``params``, a container
        like the one passed to the monitor (dict or tuple of arrays).  If it
        also accepts a batch (every array with a leading axis of size ``b``)
        and returns shape ``(b,)``, the perturbed points are evaluated in
        batched calls (detected once, as ``vectorized="auto"`` does).  May be
        None if every call passes ``loss_fn=``.
    every : int, optional
        Check every ``every`` steps (the first call is always checked).
        Default :data:`DEFAULT_EVERY` = 1000: a check costs about 10-17
        training steps of a dense layer and the per-step screen 3-4%, so
        the total stays under the 5% target (see ``docs/monitor.md``).
        With ``budget`` it is the starting value.
    directions : int, optional
        Whole-vector directions per check (default 2).  The first is aligned
        with the gradient and balanced so every parameter contributes
        equally; the others are random signs, balanced the same way.  Each
        costs 2 evaluations of ``loss_fn``.
    samples : int, optional
        Sampled coordinates per check (default 2), spread over the
        parameters; each costs 2 evaluations.  A coordinate carries little
        signal in float32 (its check is then reported as ``'noise'``); the
        directions do the heavy lifting.
    rtol : float, optional
        Relative tolerance on top of the error model.  Default 1e-3 for
        float64 parameters, 1e-2 for float32.
    on_fail : {'warn', 'raise'} or callable, optional
        ``'warn'`` issues a :class:`GradientWarning`, ``'raise'`` raises
        :class:`GradientCheckError` (an AssertionError carrying ``.report``),
        a callable is called with the :class:`MonitorReport`.
    seed : int, optional
        Seed of the random directions and coordinates.
    budget : float, optional
        Fraction of training time the checks may take (e.g. 0.02).  The
        monitor measures the step time (wall time between consecutive calls,
        minus its own) and the check time and sets ``every`` to
        ``ceil(check_time / (budget * step_time))``.
    vectorized : {'auto', True, False}, optional
        Whether ``loss_fn`` takes a batch, as in :func:`fastjac.jacobian`.

    Attributes
    ----------
    history : list of CheckRecord
        One record per check and per non-finite gradient: ``step``,
        ``rel_error``, ``per_param``, ``passed``, ``verdict``, ``seconds``.
    every : int
        The current check period.

    Notes
    -----
    **Checks.**  For a direction ``d`` (already scaled by the step) the
    numeric value is ``N = (L(x + d) - L(x - d)) / 2`` and the analytic
    value ``A = grads . d``, where ``d`` is the perturbation actually
    realized in the parameters' dtype (``fl(x +- d) - x``), so rounding the
    perturbed point costs nothing.  Elements move by
    ``EPS**(1/3) * max(1, |x_j|)`` at most.

    **Verdict** (noise-aware).  The check passes if
    ``|A - N| <= rtol * max(|A|, |N|) + noise`` with
    ``noise = 32 EPS max|L| + |L(x+d) - 2 L(x) + L(x-d)| / 2 + 32 EPS sum|g_j d_j|
    + 4 |A_p - N_p|``: the round-off of the two loss values, the truncation
    bound from the *same* evaluations (central versus one-sided difference,
    which also covers a kink such as a ReLU crossing zero), the rounding of
    the gradient itself, and the loss's round-off as measured by a probe at a
    thousandth of the step (``_measure_with_probe``).  A pass that needs the noise allowance is reported as
    ``'noise'`` (still a pass).  The curvature term is conservative (it
    bounds ``t**2 f'''/6`` by ``t f''/2``); measured on a tanh MLP it left a
    correct float32 gradient at most 0.11 of its allowance, while a 0.5x
    bug in any one parameter exceeded it many times over.

    **Second opinion.**  An entry that fails is measured again at a
    quarter and at four times the step (2 or 4 more evaluations, only on
    failure).  A wrong gradient gives the same discrepancy at any step;
    truncation and kinks shrink at the smaller step and round-off at the
    larger one, so a failure whose relative error drops below half at
    either is downgraded to ``'noise'`` with a note.

    **Culprits.**  When a whole-vector direction fails, the same direction
    restricted to one parameter at a time is checked (2 evaluations per
    parameter) and the parameters that fail are named.

    **Overhead.**  Every step: one ``g . g`` per gradient array (finite iff
    every element is, barring overflow, which is confirmed with
    ``np.isfinite``; measured 0.6-0.8x the time of ``np.isfinite(g).all()``,
    and it yields the norms the directions need).  Per check: ``1 + 2*(directions + samples)`` loss
    evaluations plus building that many perturbed copies.  Memory: a copy of
    the parameters, the directions and at most 4 perturbed copies per
    ``loss_fn`` call, O(size of params).

    **Same mini-batch.**  The check must use the batch the gradient was
    computed on.  Either pass it per call,
    ``monitor(step, params, grads, loss_fn=lambda p: loss(p, xb, yb))``, or
    create the monitor with a ``loss_fn`` that reads the current batch from
    a holder you update before calling the monitor.

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
    ...     _ = mon(step, p, g)
    ...     p = {k: p[k] - 0.1 * g[k] for k in p}
    >>> [r.passed for r in mon.history]
    [True, True, True]
    """

    def __init__(self, loss_fn, *, every=DEFAULT_EVERY, directions=2, samples=2, rtol=None,
                 on_fail="warn", seed=None, budget=None, vectorized="auto"):
        if loss_fn is not None and not callable(loss_fn):
            raise TypeError(f"`loss_fn` must be callable or None; got {describe(loss_fn)}.")
        self.every = _positive_int(every, "every")
        self.directions = _positive_int(directions, "directions", minimum=0)
        self.samples = _positive_int(samples, "samples", minimum=0)
        if self.directions + self.samples == 0:
            raise ValueError("`directions` and `samples` cannot both be 0: nothing would be checked.")
        if rtol is not None and not (isinstance(rtol, (int, float)) and not isinstance(rtol, bool)
                                     and 0 <= rtol < 1):
            raise ValueError(f"`rtol` must be a number in [0, 1) or None; got {rtol!r}.")
        if not (callable(on_fail) or on_fail in _ON_FAIL):
            raise ValueError(f"`on_fail` must be one of {sorted(_ON_FAIL)} or a callable; "
                             f"got {on_fail!r}.")
        if budget is not None and not (isinstance(budget, (int, float)) and not isinstance(budget, bool)
                                       and 0 < budget < 1):
            raise ValueError(f"`budget` must be a fraction in (0, 1) or None; got {budget!r}.")
        if vectorized not in (True, False, "auto") or (
                isinstance(vectorized, (int, float)) and not isinstance(vectorized, bool)):
            raise ValueError(f"`vectorized` must be one of [True, False, 'auto']; got {vectorized!r}.")
        self.loss_fn, self.rtol, self.on_fail, self.budget = loss_fn, rtol, on_fail, budget
        self.vectorized = vectorized
        self.rng = np.random.default_rng(seed)
        self.history: list = []
        self._layout = None
        self._last_check = None
        self._last_end = None
        self._steps_seen = 0
        self._train_seconds = 0.0     # measured time between calls
        self._check_seconds = 0.0     # time spent in checks
        self._screen_seconds = 0.0
        self._step_time = None        # EMA of one training step
        self._decisions: dict = {}    # code object -> engine strategy

    # -- public -----------------------------------------------------------
    def __call__(self, step, params, grads, *, loss_fn=None):
        """Screen ``grads`` and, when due, check them against ``loss_fn``.

        Parameters
        ----------
        step : int
        params, grads : dict or tuple of ndarray
            Matching containers; never modified.
        loss_fn : callable, optional
            Overrides the monitor's ``loss_fn`` for this call (e.g. a closure
            over the current mini-batch).

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
        if isinstance(step, bool) or not isinstance(step, (int, np.integer)):
            raise TypeError(f"`step` must be an int; got {describe(step)}.")
        step = int(step)
        layout, parrs, garrs = self._layout_for(params, grads)
        self._steps_seen += 1
        report = self._screen(step, layout, garrs)
        if report is None and self._due(step):
            fn = self.loss_fn if loss_fn is None else loss_fn
            if fn is None or not callable(fn):
                raise TypeError("`loss_fn` must be callable: pass it to GradientMonitor(...) or "
                                f"to this call; got {describe(fn)}.")
            report = self._check(step, layout, parrs, garrs, fn)
        if report is not None and not report.passed:
            self._fail(report)
        self._last_end = time.perf_counter()
        return report

    def summary(self):
        """Counts, errors and overhead so far: a dict whose ``str`` reads well."""
        checks = [r for r in self.history if r.kind == "check"]
        fails = [r for r in self.history if not r.passed]
        worst = max(checks, key=lambda r: r.rel_error, default=None)
        first = fails[0] if fails else None
        culprits = list(first.culprits) if first is not None else []
        total = self._train_seconds
        return _Summary(
            steps_seen=self._steps_seen, checks=len(checks), failures=len(fails),
            nan_events=sum(r.kind == "nan" for r in self.history), every=self.every,
            last_rel_error=checks[-1].rel_error if checks else None,
            max_rel_error=worst.rel_error if worst else None,
            max_rel_error_step=worst.step if worst else None,
            first_failure_step=first.step if first else None, culprits=culprits,
            check_seconds=self._check_seconds, screen_seconds=self._screen_seconds,
            train_seconds=total,
            overhead=(self._check_seconds + self._screen_seconds) / total if total > 0 else None)

    # -- internals ----------------------------------------------------------
    def _layout_for(self, params, grads):
        layout, parrs, garrs = _layout_of(params, grads)
        if self._layout is not None and layout.signature() != self._layout.signature():
            # A changed model is allowed, but say so: history spans both.
            logger.info("parameters changed structure: %s", layout.signature())
        self._layout = layout
        return layout, parrs, garrs

    def _due(self, step):
        return self._last_check is None or step - self._last_check >= self.every

    def _screen(self, step, layout, garrs):
        t0 = time.perf_counter()
        bad, norms = {}, []
        with np.errstate(over="ignore", invalid="ignore"):
            for p, g in enumerate(garrs):
                # g . g is finite iff every element is (barring overflow of the
                # squares, confirmed per element) and it is the fastest full
                # read of g we measured (BLAS dot: 0.6x the time of
                # np.isfinite(g).all() for float32, 0.8x for float64); it also
                # gives the norms that balance the check directions.
                sq = float(np.vdot(g, g)) if g.size else 0.0
                norms.append(math.sqrt(sq) if math.isfinite(sq) else float("inf"))
                if not math.isfinite(sq):
                    n_bad = g.size - int(np.count_nonzero(np.isfinite(g)))
                    if n_bad:
                        bad[layout.name(p)] = n_bad
        self._norms = norms
        seconds = time.perf_counter() - t0
        self._screen_seconds += seconds
        if not bad:
            return None
        entries = [_Entry(k, None, "screen", float("nan"), float("nan"), float("inf"),
                          float("inf"), 0.0, 0.0, "nan") for k in bad]
        notes = [f"the gradient of {k} holds {n} NaN/inf value(s)" for k, n in bad.items()]
        report = _make_report(step, entries, "nan", float("inf"), {k: float("inf") for k in bad},
                              list(bad), 0, seconds, notes, 0.0, layout.dtype, 0.0)
        self.history.append(CheckRecord(step, "nan", float("inf"), False, "nan", seconds,
                                        dict(report.per_param), list(bad), self.every))
        return report

    def _fail(self, report):
        if callable(self.on_fail):
            self.on_fail(report)
        elif self.on_fail == "raise":
            raise GradientCheckError(report)
        else:
            warnings.warn(str(report), GradientWarning, stacklevel=3)

    def _eps(self, layout):
        return eps_for(layout.dtype)

    def _rtol(self, layout):
        return self.rtol if self.rtol is not None else _DEFAULT_RTOL.get(layout.dtype, 1e-3)

    def _directions(self, layout, x0, garrs, norms):
        """Whole-vector steps ``D`` (k, n): gradient-aligned, then random signs.

        Each parameter block is scaled so that it contributes about equally
        to ``g . d`` (a 0.5x bug in a small bias is as visible as one in a
        big weight), then element ``j`` moves by at most
        ``tau * max(1, |x_j|)`` and the step is realized in x's dtype.
        """
        n, k, dt = layout.size, self.directions, layout.dtype
        tau = self._eps(layout) ** _STEP_POWER
        top = max(norms) if norms else 0.0
        scale = [1.0 / max(nm, _BALANCE_FLOOR * top) if top > 0 else 1.0 for nm in norms]
        sx = np.abs(x0)
        np.maximum(sx, 1.0, out=sx)
        # One spare row: the round-off probe (see _measure_with_probe), filled last.
        D = np.empty((k + 1 if k else 0, n), dtype=dt)
        for i in range(k):
            row = D[i]
            if i == 0:
                for p, (a, b) in enumerate(layout.bounds):
                    np.multiply(garrs[p].reshape(-1), dt.type(scale[p] ** 2), out=row[a:b])
                big = max(float(row.max()), -float(row.min())) if n else 0.0  # no |row| temporary
                if not math.isfinite(big) or big == 0:
                    row[...] = 1.0
                    big = 1.0
                row *= dt.type(tau / big)
            else:
                big = max(scale)
                for p, (a, b) in enumerate(layout.bounds):
                    bits = np.unpackbits(np.frombuffer(self.rng.bytes((b - a + 7) // 8), np.uint8),
                                         count=b - a)
                    v = tau * scale[p] / big
                    np.take(np.array([-v, v], dtype=dt), bits, out=row[a:b])
            row *= sx
            _realize(row, x0)
        if k:
            np.multiply(D[0], dt.type(_PROBE_FRACTION), out=D[k])
            _realize(D[k], x0)
        return D

    def _coords(self, layout, x0):
        """Sampled coordinates ``[(j, h_j)]`` spread over the parameters."""
        P, out = len(layout.bounds), []
        start = int(self.rng.integers(P))
        tau = self._eps(layout) ** _STEP_POWER
        for s in range(self.samples):
            a, b = layout.bounds[(start + s) % P]
            if b == a:
                continue
            j = int(self.rng.integers(a, b))
            h = np.array(tau * max(1.0, abs(float(x0[j]))), dtype=layout.dtype)
            h = (x0[j] + h) - x0[j]
            out.append((j, float(h)))
        return out

    def _evaluate(self, fn, layout, x0, D, items):
        """``(L0, Lminus, Lplus, nfev)`` for every direction in ``items``."""
        from .engine import jacobian_with_info

        rows = max(_ROWS_PER_CALL_CAP, _MIN_CHUNK_BYTES // max(1, x0.nbytes))
        line = _Line(fn, layout, x0, D, items, rows)
        key = _code_key(fn)
        vectorized = self._decisions.get(key, self.vectorized)
        s0 = np.zeros(len(items), dtype=layout.dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            _, info = jacobian_with_info(line, s0, method="central", order=2, step=1.0,
                                         vectorized=vectorized, progress=False,
                                         combos=[(1.0, 0.0), (0.0, 1.0)])
        if vectorized == "auto" and info.strategy in ("vectorized", "loop"):
            self._decisions[key] = info.strategy == "vectorized"
        L0 = float(np.asarray(info.fx).reshape(-1)[0])
        Lm = np.asarray(info.extra[0], dtype=np.float64).reshape(-1)
        Lp = np.asarray(info.extra[1], dtype=np.float64).reshape(-1)
        return L0, Lm, Lp, info.nfev, info.fx.dtype

    @staticmethod
    def _compare(where, L0, Lm, Lp, A, absA, eps_l, eps_g, rtol, floor=0.0):
        """Verdict of one direction or coordinate, as an :class:`_Entry`.

        ``where`` is ``(param, index, direction)``.
        """
        N = (Lp - Lm) / 2.0
        if not (math.isfinite(N) and math.isfinite(A) and math.isfinite(L0)):
            return _Entry(*where, A, N, float("inf"), float("inf"), 0.0, 0.0, "nan")
        noise = (_LOSS_ULPS * eps_l * max(abs(L0), abs(Lm), abs(Lp))
                 + abs(Lp - 2.0 * L0 + Lm) / 2.0 + _GRAD_ULPS * eps_g * absA + floor)
        err = abs(A - N)
        scale = max(abs(A), abs(N))
        rel = err / scale if scale > 0 else (0.0 if err == 0 else float("inf"))
        return _Entry(*where, A, N, err, rel, rtol * scale, noise, _status(err, rtol * scale, noise))

    def _measure(self, fn, ctx, D, items, labels):
        """Evaluate ``items`` (directions over ``D``) and compare each with the gradient.

        ``labels`` gives ``(param, index, direction)`` per item.  Returns
        ``(entries, nfev)``.
        """
        layout, x0, garrs = ctx["layout"], ctx["x0"], ctx["garrs"]
        L0, Lm, Lp, nfev, ldtype = self._evaluate(fn, layout, x0, D, items)
        if "eps_l" not in ctx:
            ctx["eps_l"] = eps_for(layout.dtype, ldtype if np.dtype(ldtype).kind == "f" else np.float64)
        entries = []
        for r, (item, where) in enumerate(zip(items, labels)):
            if item[0] == "dense":
                _, k, a, b = item
                blocks = [q for q, (qa, qb) in enumerate(layout.bounds) if a <= qa and qb <= b]
                A, absA = _analytic(garrs, layout, x0, D[k], blocks)
            else:
                _, j, h = item
                q, _ = layout.locate(j)
                hm = float((x0[j] - np.asarray(h, layout.dtype)) - x0[j])
                A = float(garrs[q].reshape(-1)[j - layout.bounds[q][0]]) * (h - hm) / 2.0
                absA = abs(A)
            entries.append(self._compare(where, L0, Lm[r], Lp[r], A, absA, ctx["eps_l"],
                                         ctx["eps_g"], ctx["rtol"], ctx.get("noise_floor", 0.0)))
        return entries, nfev

    def _measure_with_probe(self, fn, ctx, Dp, items, labels):
        """:meth:`_measure`, plus a probe of the loss's own round-off.

        The model ``32 EPS |L|`` assumes the loss is computed from quantities
        of its own size.  It often is not: late in training a softmax
        cross-entropy is a logit minus its log-sum-exp, both ~10 while the
        loss is ~1e-4, so its round-off is ~EPS * 10 and the loss moves on a
        grid far coarser than ``EPS |L|`` (float32 false alarms at step
        1000-2000 of a converging layer).  The probe is the gradient-aligned
        direction at ``_PROBE_FRACTION`` of its step, in the same batch: its
        true change is negligible, so its discrepancy ``|A - N|`` is that
        round-off, measured.  ``_PROBE_SAFETY`` times it joins every entry's
        noise.  A wrong gradient moves the probe by ``_PROBE_FRACTION`` of its
        own error, so the floor stays far below any real discrepancy.
        """
        if Dp.shape[0] == 0:
            return self._measure(fn, ctx, Dp, items, labels)
        layout = ctx["layout"]
        results, nfev = self._measure(fn, ctx, Dp, items + [("dense", Dp.shape[0] - 1, 0, layout.size)],
                                      labels + [("all params", None, "noise-probe")])
        probe = results.pop()
        if probe.status != "nan" and math.isfinite(probe.abs_error):
            floor = _PROBE_SAFETY * probe.abs_error
            ctx["noise_floor"] = floor
            for e in results:
                if e.status != "nan":
                    e.noise += floor
                    e.status = _status(e.abs_error, e.tolerance, e.noise)
        return results, nfev

    def _second_opinion(self, fn, ctx, D, items, entries):
        """Re-measure failed entries at a quarter and at four times the step.

        A wrong gradient gives the same discrepancy at any step.  Truncation
        and kinks (ReLU crossing zero inside the step) shrink at the smaller
        step; round-off shrinks at the larger one, which matters in float32
        late in training, when the gradient is tiny next to the loss (a
        correct float32 gradient was flagged at step 2000 of the 1M-parameter
        benchmark by the quarter step alone).  A failure that passes at either
        step, or whose relative error falls below half there, is downgraded
        to ``'noise'``.  Returns the number of evaluations.
        """
        nfev = 0
        for factor in (0.25, 4.0):
            todo = [r for r, e in enumerate(entries) if e.status == "fail"]
            if not todo:
                break
            nfev += self._remeasure(fn, ctx, D, items, entries, todo, factor)
        return nfev

    def _remeasure(self, fn, ctx, D, items, entries, todo, factor):
        layout, x0 = ctx["layout"], ctx["x0"]
        rows = sorted({items[r][1] for r in todo if items[r][0] == "dense"})
        Dq = np.empty((len(rows), layout.size), dtype=layout.dtype)
        for qi, k in enumerate(rows):
            np.multiply(D[k], layout.dtype.type(factor), out=Dq[qi])
            _realize(Dq[qi], x0)
        q_items = []
        for r in todo:
            it = items[r]
            if it[0] == "dense":
                q_items.append(("dense", rows.index(it[1]), it[2], it[3]))
            else:
                hq = float((x0[it[1]] + np.asarray(it[2] * factor, layout.dtype)) - x0[it[1]])
                q_items.append(("coord", it[1], hq))
        labels = [(entries[r].param, entries[r].input_index, entries[r].direction) for r in todo]
        again, nfev = self._measure(fn, ctx, Dq, q_items, labels)
        what = "a quarter of" if factor < 1 else "four times"
        cause = "truncation or a kink" if factor < 1 else "round-off"
        for r, e in zip(todo, again):
            if e.status in ("pass", "noise") or e.rel_error < 0.5 * entries[r].rel_error:
                entries[r].status = "noise"
                ctx["notes"].append(
                    f"{entries[r].where()}: the discrepancy shrank from {entries[r].rel_error:.2g} "
                    f"to {e.rel_error:.2g} at {what} the step ({cause}, not a bug)")
        return nfev

    def _check(self, step, layout, parrs, garrs, fn):
        t0 = time.perf_counter()
        x0 = layout.pack(parrs)
        norms = [nm if math.isfinite(nm) else math.sqrt(_dot64(g, g))
                 for nm, g in zip(self._norms, garrs)]
        Dp = self._directions(layout, x0, garrs, norms) if self.directions else \
            np.empty((0, layout.size), layout.dtype)
        D = Dp[:self.directions]  # a view: the rows after them hold the round-off probe
        coords = self._coords(layout, x0) if self.samples else []
        eps_g = max(eps_for(g.dtype if g.dtype.kind == "f" else np.float64) for g in garrs)
        ctx = dict(layout=layout, x0=x0, garrs=garrs, eps_g=eps_g, rtol=self._rtol(layout),
                   notes=[])
        dir_names = ["g-dir"] + [f"rand-{i}" for i in range(1, D.shape[0])]
        items = [("dense", i, 0, layout.size) for i in range(D.shape[0])]
        labels = [("all params", None, dir_names[i]) for i in range(D.shape[0])]
        for j, h in coords:
            q, idx = layout.locate(j)
            items.append(("coord", j, h))
            labels.append((layout.name(q), idx, "coordinate"))
        results, nfev = self._measure_with_probe(fn, ctx, Dp, items, labels)
        nfev += self._second_opinion(fn, ctx, D, items, results)
        failed_dirs = [i for i in range(D.shape[0]) if results[i].status in ("fail", "nan")]
        per_param = {}
        if failed_dirs:
            confirm, extra = self._confirm(fn, ctx, D, failed_dirs, dir_names)
            nfev += extra
            results += confirm
            for e in confirm:
                per_param[e.param] = max(per_param.get(e.param, 0.0), e.rel_error)
        for e in results[D.shape[0]:]:
            if e.direction == "coordinate" and e.status in ("fail", "nan"):
                per_param[e.param] = max(per_param.get(e.param, 0.0), e.rel_error)
        # Culprits: parameters failing on their own, the clearest first.
        excess = {}
        for e in results:
            if e.param != "all params" and e.status in ("fail", "nan"):
                excess[e.param] = max(excess.get(e.param, 0.0), e.excess)
        culprits = sorted(excess, key=excess.get, reverse=True)
        statuses = {e.status for e in results}
        verdict = next(v for v in ("nan", "fail", "noise", "pass") if v in statuses or v == "pass")
        notes = ctx["notes"]
        if failed_dirs and not culprits:
            notes.append("the whole-vector check failed but no single parameter did on its own: "
                         "the error may be spread over several parameters")
        if verdict == "nan":
            notes.append("the loss or the analytic value was NaN/inf at the check points")
        dir_rel = [e.rel_error for e in results[:D.shape[0]]]
        max_rel = max(dir_rel or [e.rel_error for e in results] or [0.0])
        seconds = time.perf_counter() - t0
        report = _make_report(step, results, verdict, max_rel, per_param, culprits, nfev,
                              seconds, notes, ctx["rtol"], layout.dtype,
                              self._eps(layout) ** _STEP_POWER)
        self.history.append(CheckRecord(step, "check", max_rel, verdict in ("pass", "noise"),
                                        verdict, seconds, dict(per_param), list(culprits),
                                        self.every))
        self._after_check(step, seconds)
        return report

    def _confirm(self, fn, ctx, D, failed_dirs, dir_names):
        """Re-check each failed direction one parameter at a time."""
        layout = ctx["layout"]
        items, labels = [], []
        for i in failed_dirs:
            for p, (a, b) in enumerate(layout.bounds):
                if b > a and np.any(D[i, a:b]):
                    items.append(("dense", i, a, b))
                    labels.append((layout.name(p), None, dir_names[i]))
        if not items:
            return [], 0
        entries, nfev = self._measure(fn, ctx, D, items, labels)
        nfev += self._second_opinion(fn, ctx, D, items, entries)
        return entries, nfev

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


def _positive_int(value, name, minimum=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        what = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"`{name}` must be {what}; got {value!r}.")
    return int(value)


def _realize(d, x0):
    """Replace ``d`` by ``fl(x0 + d) - x0``, the step the perturbed point really takes."""
    tmp = x0 + d
    np.subtract(tmp, x0, out=d)


def _analytic(garrs, layout, x0, d, blocks):
    """``grads . (d - m) / 2`` and ``sum |grads (d - m) / 2|`` over the given parameters,
    where ``m = fl(x0 - d) - x0`` is the minus-side step really taken."""
    A = absA = 0.0
    for p in blocks:
        a, b = layout.bounds[p]
        if b == a:
            continue
        step = x0[a:b] - d[a:b]
        step -= x0[a:b]           # m
        np.subtract(d[a:b], step, out=step)
        step *= step.dtype.type(0.5)
        g = garrs[p].reshape(-1)
        A += _dot64(g, step)
        absA += _dot64(g, step, absolute=True)
    return A, absA
