"""The report of a derivative check: :class:`JacobianCheck` and :class:`Mismatch`.

A report carries the verdict, both matrices, the error figures and the
worst entries, each with its full index, its errors, the estimated
finite-difference noise and a status.  ``str(report)`` is the readable
summary; ``report.to_dict()`` is JSON-serializable.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["JacobianCheck", "Mismatch", "STATUSES", "VERDICTS"]

#: Status of one compared entry, and what it means.
STATUSES = {
    "ok": "within tolerance",
    "noise": "outside tolerance but within finite-difference noise (confirmed by a second estimate)",
    "bug": "mismatch confirmed by a second estimate: likely a wrong derivative",
    "non-differentiable": "f has a kink within the step; the expected value is a one-sided slope",
    "nan": "NaN or inf in f, in the expected value or in the numeric estimate",
}

#: Verdicts in order of precedence (the first that applies wins) and whether they pass.
VERDICTS = {
    "nan": False,
    "non-deterministic": False,
    "fail": False,
    "non-differentiable": True,
    "noise": True,
    "pass": True,
}

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
        The analytic value under test and the finite-difference estimate.
    abs_error, rel_error : float
        ``|expected - numeric|`` and that over ``max(|expected|, |numeric|)``
        (symmetric, so an expected 0 gives 1, not inf).
    tolerance : float
        ``atol + rtol * |expected|`` (propagated for directional checks).
    noise : float
        Estimated finite-difference error of ``numeric``.
    status : {'ok', 'noise', 'bug', 'non-differentiable', 'nan'}
    second_opinion : float or None
        The re-estimate at a quarter of the step, when one was made.
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
            "tolerance", "noise", "status", "second_opinion")} | {"where": self.where}


@dataclass
class JacobianCheck:
    """Result of :func:`fastjac.check_jacobian` and the other checks.

    Attributes
    ----------
    passed : bool
        True for the verdicts ``'pass'``, ``'noise'`` and
        ``'non-differentiable'`` (expected value within the one-sided slopes).
    verdict : {'pass', 'noise', 'non-differentiable', 'fail', 'nan', 'non-deterministic'}
    numeric, expected : ndarray
        The compared quantities (for full checks the Jacobians, shaped like
        ``J``; for sampled/directional checks the sampled partials and
        directional derivatives).
    error_norm : float
        ``||expected - numeric||`` (the notebook's figure).
    max_abs_error, max_rel_error : float
        Largest ``|expected - numeric|``, and largest
        ``|expected - numeric| / max(|expected|, |numeric|, atol)``.
    worst : list of Mismatch
        The entries furthest outside their tolerance, worst first.
    noise : ndarray
        Estimated finite-difference error per entry, shaped like ``numeric``.
    status : ndarray of str
        Status per entry, shaped like ``numeric``.
    nfev : int
        Evaluations of ``f`` (second opinions and guards included).
    method : str
        E.g. ``'central-4'``.
    step : ndarray or float
        Step taken per input (or per direction).
    rtol, atol : float
        Tolerances used (dtype table merged with overrides).
    dtype : str
        The dtype keying the tolerance table.
    kind : str
        ``'jacobian'``, ``'grad/full'``, ``'grad/sampled+directional'``, ``'vjp'``, ``'jvp'``...
    notes : list of str
    """

    passed: bool
    verdict: str
    numeric: np.ndarray
    expected: np.ndarray
    error_norm: float
    max_abs_error: float
    max_rel_error: float
    worst: list
    noise: np.ndarray
    nfev: int
    method: str
    step: object
    rtol: float = 0.0
    atol: float = 0.0
    dtype: str = "float64"
    kind: str = "jacobian"
    status: np.ndarray | None = None
    notes: list = field(default_factory=list)
    counts: dict = field(default_factory=dict)
    seconds: float = 0.0

    def __bool__(self) -> bool:
        return bool(self.passed)

    @property
    def bugs(self) -> list:
        """The worst entries whose status is ``'bug'``."""
        return [w for w in self.worst if w.status == "bug"]

    def to_dict(self) -> dict:
        """JSON-serializable summary (matrices as nested lists)."""
        step = self.step
        return {
            "passed": bool(self.passed), "verdict": self.verdict, "kind": self.kind,
            "method": self.method, "dtype": self.dtype, "rtol": float(self.rtol),
            "atol": float(self.atol), "nfev": int(self.nfev),
            "error_norm": _plain(self.error_norm), "max_abs_error": _plain(self.max_abs_error),
            "max_rel_error": _plain(self.max_rel_error),
            "counts": _plain(self.counts),
            "worst": [w.to_dict() for w in self.worst],
            "numeric": _plain(self.numeric),
            "expected": _plain(self.expected),
            "noise": _plain(self.noise),
            "step": _plain(np.asarray(step) if step is not None else None),
            "notes": list(self.notes), "seconds": float(self.seconds),
        }

    # -- formatting -------------------------------------------------------
    def _header(self) -> str:
        word = "PASS" if self.passed else "FAIL"
        counts = ", ".join(f"{v} {k}" for k, v in self.counts.items() if v)
        return (f"fastjac {self.kind} check: {word} (verdict: {self.verdict})\n"
                f"  {self.method}, {self.dtype}, rtol={self.rtol:g}, atol={self.atol:g}, "
                f"nfev={self.nfev}" + (f"; entries: {counts}" if counts else "") + "\n"
                f"  error norm {self.error_norm:.3g}, max abs error {self.max_abs_error:.3g}, "
                f"max rel error {self.max_rel_error:.3g}")

    def _side_by_side(self) -> str | None:
        if isinstance(self.numeric, (tuple, dict)):
            return None  # tuple/dict inputs: the table names the key instead
        num, exp = np.asarray(self.numeric), np.asarray(self.expected)
        if num.size > _SIDE_BY_SIDE_MAX or num.size == 0:
            return None
        two = num.reshape(1, -1) if num.ndim < 2 else num.reshape(-1, num.shape[-1])
        if two.shape[1] > _SIDE_BY_SIDE_COLS:
            return None
        exp2 = exp.reshape(two.shape)
        opts = dict(precision=6, suppress_small=True, max_line_width=200)
        left = np.array2string(exp2, **opts).splitlines()
        right = np.array2string(two, **opts).splitlines()
        width = max(len("analytic"), *(len(s) for s in left))
        lines = [f"  {'analytic'.ljust(width)}   numeric"]
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
        parts += [f"  note: {n}" for n in self.notes]
        return "\n".join(parts)

    def __repr__(self) -> str:
        return (f"JacobianCheck(passed={self.passed}, verdict={self.verdict!r}, "
                f"error_norm={self.error_norm:.3g}, nfev={self.nfev})")
