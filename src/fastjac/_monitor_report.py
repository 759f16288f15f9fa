"""What the monitor reports: :class:`MonitorReport`, :class:`CheckRecord`, the summary.

A check compares a few scalars (the loss's change along a direction, or at
one coordinate, against the gradient's prediction); each is an
:class:`Entry` with a status from the shared vocabulary
(:mod:`fastjac._vocabulary`: ``ok``, ``noise``, ``bug``, ``nan``).
:func:`make_report` turns entries into a :class:`MonitorReport`, the
:class:`~fastjac.JacobianCheck` a failed check raises, warns or hands over.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ._vocabulary import code, counts_of, verdict_of, VERDICTS
from .report import JacobianCheck, Mismatch

__all__ = ["Entry", "MonitorReport", "CheckRecord", "Summary", "make_report", "summarize",
           "ALL_PARAMS"]

#: The ``param`` of an entry that moves every parameter at once.
ALL_PARAMS = "all params"

# Most severe first, for the order of the report's table.
_RANK = {"nan": 0, "bug": 1, "noise": 2, "ok": 3}


@dataclass
class Entry(Mismatch):
    """One compared quantity, a direction or a coordinate: a report row
    (:class:`~fastjac.report.Mismatch`) that also knows its parameter.

    ``expected`` is the gradient's prediction ``grads . d``, ``numeric`` the
    central difference ``(L(x + d) - L(x - d)) / 2``; ``tolerance`` is
    ``rtol * max(|expected|, |numeric|)`` and ``noise`` the error model's
    allowance on top of it.  ``input_index`` (and so ``where``) reads
    ``"params['W1'] (rand-1)"`` or ``"params['W1'][3, 2]"``.
    """

    param: str = ALL_PARAMS  # "params['W1']", "params[0]" or ALL_PARAMS
    index: tuple | None = None   # the element, for a coordinate
    direction: str = ""      # "g-dir", "rand-1", "coordinate", "noise-probe", "screen"

    @classmethod
    def of(cls, param, index, direction, *figures) -> Entry:
        """``figures``: expected, numeric, abs_error, rel_error, tolerance, noise, status."""
        place = (f"{param}[{', '.join(map(str, index))}]" if index is not None
                 else f"{param} ({direction})")
        return cls((), place, *figures, None, param=param, index=index, direction=direction)

    @classmethod
    def nonfinite(cls, param, index, direction, expected=math.nan, numeric=math.nan) -> Entry:
        inf = float("inf")
        return cls.of(param, index, direction, expected, numeric, inf, inf, 0.0, 0.0, "nan")

    @property
    def excess(self) -> float:
        """How many times its allowance the error is (> 1 fails)."""
        allowed = self.tolerance + self.noise
        return self.abs_error / allowed if allowed > 0 else float("inf")

    @property
    def failed(self) -> bool:
        return self.status in ("bug", "nan")


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
        directional check, for failed coordinates, for non-finite values).
    culprits : list of str
        Parameters whose own check failed or that hold NaN/inf.

    ``numeric``/``expected`` hold the directional derivatives (whole-vector,
    then sampled coordinates, then per-parameter confirmations); ``worst``
    names each entry (``"params['W1'] (rand-1)"`` or ``"params['W1'][3, 2]"``).
    """

    def __init__(self, *, training_step=0, per_param=None, culprits=None, **report):
        super().__init__(**report)
        self.training_step = int(training_step)
        self.per_param = dict(per_param or {})
        self.culprits = list(culprits or [])

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
                f"verdict={self.verdict!r}, max_rel_error={self.max_rel_error:.3g}, "
                f"culprits={self.culprits})")


def make_report(step, entries, *, max_rel, per_param, culprits, nfev, seconds, notes, rtol,
                dtype, step_size, seed=None, fallback=None) -> MonitorReport:
    """The report of one check or screen; its figures are computed when first read."""
    codes = np.array([code(e.status) for e in entries], dtype=np.int8)
    counts = counts_of(codes)
    verdict = verdict_of(counts)
    A = np.array([e.expected for e in entries], dtype=float)
    N = np.array([e.numeric for e in entries], dtype=float)

    def errors():
        with np.errstate(invalid="ignore", over="ignore"):
            return np.abs(A - N)

    def worst():
        return sorted(entries, key=lambda e: (_RANK[e.status], -e.rel_error))

    return MonitorReport(
        passed=VERDICTS[verdict], verdict=verdict, numeric=N, expected=A, nfev=nfev,
        method="central-2", step=step_size, rtol=rtol, atol=0.0, dtype=str(dtype),
        kind="grad/monitor", notes=notes, seconds=seconds, seed=seed, fallback=fallback,
        status_codes=codes, counts=counts, max_rel_error=max_rel, worst=worst,
        error_norm=lambda: float(np.sqrt(np.sum(errors() ** 2))) if A.size else 0.0,
        max_abs_error=lambda: float(np.max(errors())) if A.size else 0.0,
        noise=lambda: np.array([e.noise for e in entries], dtype=float),
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


def _plural(count, word):
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


class Summary(dict):
    """A dict whose ``str`` is a readable paragraph."""

    def __str__(self):
        s = self
        lines = [f"GradientMonitor: {_plural(s['checks'], 'check')} over "
                 f"{_plural(s['steps_seen'], 'step')} (every {s['every']}), "
                 f"{s['failures']} failed; {_plural(s['nan_events'], 'non-finite screen')}"]
        if s["checks"]:
            lines.append(f"  rel error: last {s['last_rel_error']:.3g}, "
                         f"max {s['max_rel_error']:.3g} (at step {s['max_rel_error_step']})")
        if s["first_failure_step"] is not None:
            lines.append(f"  first failure at step {s['first_failure_step']}: "
                         f"{', '.join(s['culprits']) or 'no single parameter'}")
        if s["first_nan_step"] is not None:
            lines.append(f"  first non-finite value at step {s['first_nan_step']}: "
                         f"{', '.join(s['nan_culprits']) or 'in the loss only'}")
        if s["overhead"] is not None:
            lines.append(f"  overhead: checks took {s['check_seconds']:.3g} s, "
                         f"{100 * s['overhead']:.2f}% of measured training time")
        return "\n".join(lines)


def summarize(history, *, steps_seen, every, check_seconds, screen_seconds,
              train_seconds) -> Summary:
    """Counts, errors and overhead of a monitor's history, each kind counted apart."""
    checks = [r for r in history if r.kind == "check"]
    screens = [r for r in history if r.kind == "nan"]
    failed = [r for r in checks if not r.passed]
    worst = max(checks, key=lambda r: r.rel_error, default=None)
    first = failed[0] if failed else None
    first_nan = screens[0] if screens else None
    return Summary(
        steps_seen=steps_seen, checks=len(checks), failures=len(failed),
        nan_events=len(screens), every=every,
        last_rel_error=checks[-1].rel_error if checks else None,
        max_rel_error=worst.rel_error if worst else None,
        max_rel_error_step=worst.step if worst else None,
        first_failure_step=first.step if first else None,
        culprits=list(first.culprits) if first else [],
        first_nan_step=first_nan.step if first_nan else None,
        nan_culprits=list(first_nan.culprits) if first_nan else [],
        check_seconds=check_seconds, screen_seconds=screen_seconds, train_seconds=train_seconds,
        overhead=(check_seconds + screen_seconds) / train_seconds if train_seconds > 0 else None)
