"""The report of a derivative check: :class:`JacobianCheck`, :class:`Mismatch`, :class:`Diagnosis`.

A report carries the verdict, what was compared (the numeric and the
expected values), the error figures, the worst entries (each with its full
index, its errors, the estimated finite-difference noise and a status), and
the diagnoses drawn from the pattern of the mismatch.  ``str(report)`` is
the readable summary, headline first; ``report.to_dict()`` is
JSON-serializable.

Figures that cost a pass over the compared values (the error norms, the
per-entry noise and statuses as strings) are computed when first read, so a
check that passes costs its evaluations of ``f`` and little more.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._vocabulary import STATUS_NAMES, STATUSES, VERDICTS

__all__ = ["JacobianCheck", "Mismatch", "Diagnosis", "STATUSES", "VERDICTS"]

# Above this many entries (or columns) the report shows a table, not the matrices.
_SIDE_BY_SIDE_MAX = 64
_SIDE_BY_SIDE_COLS = 8


def _plain(value):
    """Convert numpy scalars, tuples and arrays into JSON-friendly values."""
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()] if value.ndim else _plain(value.item())
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if np.isfinite(value) else repr(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, (Diagnosis, Mismatch)):
        return value.to_dict()
    return value


def _fmt_index(index) -> str:
    if isinstance(index, str):
        return index
    if isinstance(index, tuple) and len(index) == 2 and isinstance(index[0], str):
        key, rest = index
        return f"{key}{_fmt_index(rest) if not isinstance(rest, str) else '[' + rest + ']'}"
    if isinstance(index, tuple):
        return "[" + ", ".join(str(i) for i in index) + "]" if index else "[]"
    return str(index)


@dataclass
class Mismatch:
    """One compared entry.

    Attributes
    ----------
    output_index, input_index : tuple or str
        Where the entry sits: the index into ``f(x)`` and the index into
        ``x`` (for tuple/dict inputs ``(key, index)``; for directional
        checks ``"direction k"``).
    expected, numeric : float
        The expected value under test (the analytic derivative) and the
        finite-difference estimate.
    abs_error, rel_error : float
        ``|expected - numeric|`` and that over ``max(|expected|, |numeric|, atol)``
        (symmetric, so an expected 0 gives 1, not inf).
    tolerance : float
        ``atol + rtol * |expected|`` (propagated for directional checks).
    noise : float
        Estimated finite-difference error of ``numeric``.
    status : {'ok', 'noise', 'non-differentiable', 'discontinuous', 'inconclusive', 'bug', 'nan'}
    second_opinion : float or None
        The re-estimate at a smaller step, when one was made.
    search_evaluations : int or None
        For an entry found by splitting a failing direction's support (the
        sampled and directional modes), the evaluations of ``f`` the search took.
    """

    output_index: object
    input_index: object
    expected: float
    numeric: float
    abs_error: float
    rel_error: float
    tolerance: float
    noise: float
    status: str
    second_opinion: float | None = None
    search_evaluations: int | None = None

    @property
    def where(self) -> str:
        out = self.output_index
        out = out if isinstance(out, str) else (f"out{_fmt_index(out)}" if out != () else "")
        inp = self.input_index
        inp = inp if isinstance(inp, str) else f"in{_fmt_index(inp)}"
        return f"{out} / {inp}" if out else inp

    def to_dict(self) -> dict:
        return {k: _plain(getattr(self, k)) for k in (
            "output_index", "input_index", "expected", "numeric", "abs_error", "rel_error",
            "tolerance", "noise", "status", "second_opinion", "search_evaluations")} | {
            "where": self.where}


@dataclass(frozen=True)
class Diagnosis:
    """What the pattern of a mismatch suggests, with the evidence for it.

    Attributes
    ----------
    kind : str
        ``'factor'``, ``'sign'``, ``'transpose'``, ``'swapped'``, ``'row'``,
        ``'column'``, ``'kinks'``, ``'ill-conditioned'``, ``'discontinuity'``...
    message : str
        The suggestion, e.g. "a missing or extra factor 8 (1/m?)".
    evidence : str
        What was measured that supports it.
    """

    kind: str
    message: str
    evidence: str

    def __str__(self) -> str:
        return f"{self.message} ({self.evidence})"

    def to_dict(self) -> dict:
        return {"kind": self.kind, "message": self.message, "evidence": self.evidence}


_LAZY = ("error_norm", "max_abs_error", "max_rel_error", "worst", "noise", "status", "counts")
_LAZY_NAMES = frozenset(_LAZY)


class JacobianCheck:
    """Result of :func:`fastjac.check_jacobian` and the other checks.

    Attributes
    ----------
    passed : bool
        True for the verdicts ``'pass'``, ``'noise'``, ``'non-differentiable'``
        and ``'discontinuous'``.
    verdict : {'pass', 'noise', 'non-differentiable', 'discontinuous', 'inconclusive', 'fail', 'nan', 'non-deterministic'}
    numeric, expected : ndarray (or a tuple/dict of them for container inputs)
        The compared quantities: for full checks the Jacobians, shaped like
        ``J``; for sampled/directional checks the sampled partials and the
        directional derivatives.
    error_norm : float
        ``||expected - numeric||`` (the notebook's figure).
    max_abs_error, max_rel_error : float
        Largest ``|expected - numeric|``, and largest
        ``|expected - numeric| / max(|expected|, |numeric|, atol)``.
    worst : list of Mismatch
        The entries furthest outside their tolerance, most severe first.
    diagnoses : list of Diagnosis
        What the pattern of the mismatch suggests (empty when it passed).
    noise : ndarray
        Estimated finite-difference error per entry, shaped like ``numeric``.
    status : ndarray of str
        Status per entry, shaped like ``numeric`` (``status_codes`` holds the
        same as int8 codes into :data:`fastjac._vocabulary.STATUS_NAMES`).
    counts : dict
        Entries per status.
    nfev : int
        Points at which ``f`` was evaluated (guards, probes and second
        opinions included).
    method : str
        E.g. ``'central-2'``.
    step : ndarray or float
        Step taken per input (or per direction).
    rtol, atol : float
        Tolerances used (dtype table merged with overrides).
    dtype : str
        The dtype keying the tolerance table.
    kind : str
        ``'jacobian'``, ``'jacobian/directional'``, ``'grad/full'``, ``'vjp'``...
    seed : int or None
        Seed of the random directions and sampled coordinates, if any.
    fallback : str or None
        Why ``f`` was evaluated once per point, if it was.
    notes : list of str
    """

    def __init__(self, *, passed, verdict, numeric, expected, nfev, method, step, rtol=0.0,
                 atol=0.0, dtype="float64", kind="jacobian", notes=(), seconds=0.0, seed=None,
                 fallback=None, diagnoses=(), status_codes=None, **figures):
        self.passed, self.verdict = bool(passed), verdict
        self.numeric, self.expected = numeric, expected
        self.nfev, self.method, self.step = int(nfev), method, step
        self.rtol, self.atol, self.dtype, self.kind = float(rtol), float(atol), dtype, kind
        self.notes, self.seconds, self.seed = list(notes), float(seconds), seed
        self.fallback, self.diagnoses = fallback, list(diagnoses)
        self.status_codes = status_codes
        if not figures.keys() <= _LAZY_NAMES:
            unknown = set(figures) - set(_LAZY)
            raise TypeError(f"unexpected keyword argument(s) {sorted(unknown)}")
        # A figure is a value, or a zero-argument callable evaluated on first read.
        self._figures = figures

    @classmethod
    def from_fields(cls, fields, figures):
        """A report from ``fields`` already of their types (every ``__init__``
        argument but the figures) and ``figures``; for the warm check, where
        ``__init__``'s conversions cost a tenth of the whole check."""
        report = cls.__new__(cls)
        report.__dict__.update(fields)
        report._figures = figures
        return report

    def _figure(self, name, default):
        value = self._figures.get(name, default)
        if callable(value) and not isinstance(value, np.ndarray):
            value = value()
            self._figures[name] = value
        return value

    error_norm = property(lambda self: self._figure("error_norm", 0.0))
    max_abs_error = property(lambda self: self._figure("max_abs_error", 0.0))
    max_rel_error = property(lambda self: self._figure("max_rel_error", 0.0))
    worst = property(lambda self: self._figure("worst", []))
    noise = property(lambda self: self._figure("noise", None))
    counts = property(lambda self: self._figure("counts", {}))

    @property
    def status(self):
        value = self._figures.get("status")
        if value is None and self.status_codes is not None:
            value = self._figures["status"] = np.asarray(STATUS_NAMES, dtype=object)[
                np.asarray(self.status_codes, dtype=np.intp)]
        return self._figure("status", None) if value is None else value

    def __bool__(self) -> bool:
        return bool(self.passed)

    @property
    def bugs(self) -> list:
        """The worst entries whose status is ``'bug'``."""
        return [w for w in self.worst if w.status == "bug"]

    @property
    def headline(self) -> str:
        """One line: the verdict and, when it failed, the leading diagnosis."""
        word = "PASS" if self.passed else "FAIL"
        line = f"fastjac {self.kind} check: {word} (verdict: {self.verdict})"
        if self.diagnoses:
            line += f": {self.diagnoses[0].message}"
        elif not self.passed and self.worst:
            w = self.worst[0]
            line += f": worst at {w.where}, expected {w.expected:.6g}, numeric {w.numeric:.6g}"
        return line

    def to_dict(self) -> dict:
        """JSON-serializable summary (matrices as nested lists)."""
        step = self.step
        return {
            "passed": bool(self.passed), "verdict": self.verdict, "kind": self.kind,
            "method": self.method, "dtype": self.dtype, "rtol": float(self.rtol),
            "atol": float(self.atol), "nfev": int(self.nfev), "seed": _plain(self.seed),
            "error_norm": _plain(self.error_norm), "max_abs_error": _plain(self.max_abs_error),
            "max_rel_error": _plain(self.max_rel_error),
            "counts": _plain(self.counts),
            "diagnoses": [d.to_dict() for d in self.diagnoses],
            "worst": [w.to_dict() for w in self.worst],
            "numeric": _plain(self.numeric),
            "expected": _plain(self.expected),
            "noise": _plain(self.noise),
            "step": _plain(np.asarray(step) if step is not None else None),
            "fallback": self.fallback,
            "notes": list(self.notes), "seconds": float(self.seconds),
        }

    # -- formatting -------------------------------------------------------
    def _header(self) -> str:
        counts = ", ".join(f"{v} {k}" for k, v in self.counts.items() if v)
        seed = f", seed={self.seed}" if self.seed is not None else ""
        lines = [self.headline]
        lines += [f"  diagnosis: {d}" for d in self.diagnoses]
        lines.append(f"  {self.method}, {self.dtype}, rtol={self.rtol:g}, atol={self.atol:g}, "
                     f"nfev={self.nfev}{seed}" + (f"; entries: {counts}" if counts else ""))
        lines.append(f"  error norm {self.error_norm:.3g}, max abs error {self.max_abs_error:.3g}, "
                     f"max rel error {self.max_rel_error:.3g}")
        return "\n".join(lines)

    def _side_by_side(self) -> str | None:
        if isinstance(self.numeric, (tuple, dict)):
            return None  # tuple/dict inputs: the table names the key instead
        num, exp = np.asarray(self.numeric), np.asarray(self.expected)
        if num.size > _SIDE_BY_SIDE_MAX or num.size == 0 or exp.size != num.size:
            return None
        two = num.reshape(1, -1) if num.ndim < 2 else num.reshape(-1, num.shape[-1])
        if two.shape[1] > _SIDE_BY_SIDE_COLS:
            return None
        exp2 = exp.reshape(two.shape)
        opts = dict(precision=6, suppress_small=True, max_line_width=200)
        left = np.array2string(exp2, **opts).splitlines()
        right = np.array2string(two, **opts).splitlines()
        width = max(len("expected"), *(len(s) for s in left))
        lines = [f"  {'expected'.ljust(width)}   numeric"]
        lines += [f"  {a.ljust(width)}   {b}" for a, b in zip(left, right)]
        return "\n".join(lines)

    def _table(self, rows) -> str:
        head = (f"  {'status':<18} {'where':<28} {'expected':>12} {'numeric':>12} "
                f"{'abs err':>9} {'rel err':>9} {'noise':>9}")
        lines = [head]
        for w in rows:
            lines.append(
                f"  {w.status:<18} {w.where:<28.28} {w.expected:>12.6g} {w.numeric:>12.6g} "
                f"{w.abs_error:>9.2g} {w.rel_error:>9.2g} {w.noise:>9.2g}")
        return "\n".join(lines)

    def __str__(self) -> str:
        parts = [self._header()]
        side = self._side_by_side()
        if side is not None:
            parts.append(side)
        flagged = [w for w in self.worst if w.status != "ok"]
        if flagged:
            parts.append("  worst entries:\n" + self._table(flagged))
        elif side is None and self.worst:
            parts.append("  largest errors (all within tolerance):\n" + self._table(self.worst[:3]))
        if self.fallback:
            parts.append(f"  note: {self.fallback}")
        parts += [f"  note: {n}" for n in self.notes]
        return "\n".join(parts)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(passed={self.passed}, verdict={self.verdict!r}, "
                f"error_norm={self.error_norm:.3g}, nfev={self.nfev})")
