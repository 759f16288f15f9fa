"""From a judged problem to a :class:`~fastjac.report.JacobianCheck`.

The report's costly figures (error norms over every entry, the per-entry
noise, statuses as strings, the worst entries) are handed over as
zero-argument callables, computed when first read.
"""
from __future__ import annotations

import time

import numpy as np

from .._vocabulary import STATUS_NAMES, VERDICTS
from ..report import JacobianCheck, Mismatch
from .guards import describe_positions, nonfinite_positions
from .judging import figures, noise_array, worst

__all__ = ["finish", "early", "STATUS_NOTES"]

#: What a report says when some entries have a status other than ok or bug.
STATUS_NOTES = {
    "noise": "some entries differ by more than the tolerance but a second estimate at a "
             "smaller step agrees with the expected values: finite-difference noise.",
    "non-differentiable": "f is not differentiable within the step at some entries (kinks: "
                          "relu, abs, max at a tie?); the expected values there lie between "
                          "the one-sided slopes, which is all a derivative check can ask of them.",
    "discontinuous": "f jumps within the step at some entries; the expected values match the "
                     "slope on one side of the jump. Check at a point away from the jump.",
    "inconclusive": "at some entries the estimates at two steps disagree far beyond their "
                    "noise: f is ill-conditioned at this step and dtype (in float32, an "
                    "eigen-decomposition or a pseudo-inverse near a rank drop). Check in "
                    "float64, or pass a step.",
}


class _Once:
    """A zero-argument callable that computes its value once."""

    def __init__(self, fn):
        self.fn, self.done, self.value = fn, False, None

    def __call__(self):
        if not self.done:
            self.value, self.done = self.fn(), True
        return self.value


def early(st, verdict, arr, note, extra_notes=()):
    """A report that compared nothing: NaN in f(x) or in the expected values, or non-determinism."""
    arr = np.asarray(arr, dtype=np.float64)
    return JacobianCheck(
        passed=False, verdict=verdict, numeric=arr, expected=arr, nfev=st.prep.nfev,
        method=st.method_name, step=None, rtol=st.tol.rtol, atol=st.tol.atol, dtype=st.dtype,
        kind=st.kind, notes=[note, *extra_notes, *st.notes, *st.prep.notes()], seed=st.seed,
        fallback=st.prep.fallback, error_norm=float("nan"), max_abs_error=float("nan"),
        max_rel_error=float("nan"), worst=[], noise=np.full(arr.shape, np.nan),
        seconds=time.perf_counter() - st.t_start)


def nonfinite_note(what, arr):
    where, count = nonfinite_positions(arr)
    return (f"{what} is NaN or inf at {describe_positions(where, count)} "
            f"({count} of {np.size(arr)} entries); nothing was compared.")


def finish(st, problem, judgement, *, shape, split=None, diagnoses=(), localized=(),
           step=None):
    """The report of a judged problem; ``split`` cuts (R, K) arrays per input."""
    prep = st.prep
    counts = judgement.counts
    notes = list(st.notes) + list(problem.notes) + list(judgement.notes) + prep.notes()
    for name, note in STATUS_NOTES.items():
        if counts.get(name):
            notes.append(note)
    if counts.get("nan"):
        notes.append("the numeric estimate or the expected value is NaN or inf at some entries "
                     "(a log or a division near its singularity at a perturbed point?); move x "
                     "or pass a smaller step.")
    for r, k, sentence, _ in judgement.evidence[:3]:
        where = Mismatch(problem.out_label(r), problem.in_label(k), 0, 0, 0, 0, 0, 0, "").where
        notes.append(f"second opinion at {where}: {sentence}.")
    shape = tuple(shape)

    def shaped(a):
        a = np.asarray(a).reshape(shape)
        return a if split is None else split(a)

    figs = _Once(lambda: figures(problem))
    codes = judgement.codes

    def status_names():
        c = np.zeros((problem.R, problem.K), np.int8) if codes is None else codes
        return shaped(np.asarray(STATUS_NAMES, dtype=object)[c.astype(np.intp)])

    def worst_entries():
        return [m for m in localized if isinstance(m, Mismatch)] + worst(problem, judgement)

    return JacobianCheck(
        passed=VERDICTS[judgement.verdict], verdict=judgement.verdict,
        numeric=shaped(problem.numeric), expected=shaped(np.asarray(problem.expected)),
        nfev=prep.nfev, method=st.method_name,
        step=problem.directions.step.reshape(prep.x_shape) if step is None else step,
        rtol=st.tol.rtol, atol=problem.atol, dtype=st.dtype, kind=st.kind, notes=notes,
        seed=st.seed, fallback=prep.fallback, diagnoses=list(diagnoses),
        status_codes=None if codes is None else codes.reshape(shape),
        seconds=time.perf_counter() - st.t_start,
        error_norm=lambda: figs()[0], max_abs_error=lambda: figs()[1],
        max_rel_error=lambda: figs()[2], worst=worst_entries,
        noise=lambda: shaped(noise_array(problem)), status=status_names, counts=counts)
