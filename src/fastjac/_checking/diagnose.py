"""Diagnoses: what the pattern of a mismatch says about the bug, with its evidence.

Each rule looks at the entries confirmed as bugs (and, for a full check,
at the whole expected and numeric Jacobians) and speaks only when the
pattern is clear:

- a uniform ratio: every wrong entry is off by the same factor ``c``
  (a missing or extra factor, named after a dimension of ``x`` or ``f(x)``
  when one matches, e.g. ``1/m``); ``c = -1`` is a sign flip;
- a transposed layout: ``expected`` matches the numeric Jacobian transposed;
- swapped blocks: the expected derivative for one input is the numeric one
  of another input;
- a single wrong row (one output) or column (one input);
- and, from the second opinions, kinks crossed, jumps, or an ill-conditioned
  ``f`` (where no verdict can be trusted).
"""
from __future__ import annotations

import numpy as np

from .._vocabulary import STATUS_CODES
from ..report import Diagnosis

__all__ = ["diagnose"]

_BUG = STATUS_CODES["bug"]
#: Ratios that agree to this relative spread count as "the same factor".
_SPREAD = 0.01


def _close(a, b, rtol, atol):
    with np.errstate(invalid="ignore", over="ignore"):
        return bool(np.all(np.abs(a - b) <= atol + rtol * np.maximum(np.abs(a), np.abs(b))))


def _factor(E, N, dims, where=None):
    """A common ratio ``E / N`` over the wrong entries, as a Diagnosis (or None)."""
    use = np.abs(N) > 0
    if use.sum() < 1:
        return None
    ratio = E[use] / N[use]
    c = float(np.median(ratio))
    if not np.isfinite(c) or c == 0 or np.any(np.abs(ratio - c) > _SPREAD * abs(c)):
        return None
    lo, hi = float(ratio.min()), float(ratio.max())
    span = f"{lo:.4g}" if np.isclose(lo, hi, rtol=1e-4) else f"from {lo:.4g} to {hi:.4g}"
    count = int(use.sum())
    what = "the wrong entry is" if count == 1 else f"all {count} wrong entries are"
    if abs(c + 1) <= _SPREAD:
        return Diagnosis("sign", "a sign flip: expected is the negative of the derivative",
                         f"{what} -1x the numeric value (expected / numeric {span})")
    hint = ""
    for name, size in dims:
        if size > 1 and abs(c - size) <= _SPREAD * size:
            hint = f", e.g. a factor {size} = {name} too many"
        elif size > 1 and abs(1 / c - size) <= _SPREAD * size:
            hint = f", e.g. a missing 1/{size} ({name})"
        if hint:
            break
    if not hint and abs(c - 2) <= _SPREAD * 2:
        hint = " (the 2 of a square's derivative counted twice?)"
    elif not hint and abs(c - 0.5) <= _SPREAD * 0.5:
        hint = " (the 2 of a square's derivative missing?)"
    if count == 1 and where is not None:
        return Diagnosis("entry", f"one entry is wrong: {where}, {c:.4g}x the numeric value",
                         f"only {where} is a confirmed mismatch (expected / numeric {span})")
    return Diagnosis("factor", f"a missing or extra factor {c:.4g}{hint}",
                     f"{what} {c:.4g}x the numeric value (expected / numeric {span})")


def _transposed(E2, N2, rtol, atol, x_shape, out_shape):
    """Does ``expected`` hold the numeric Jacobian in another layout?

    Tried: the matrix transposed, then every other order of the axes of ``x``
    (and of ``f(x)``), the result read back in the original shape.  A
    permutation that keeps the shape is a transposed matrix argument; one
    that does not is a transpose before a reshape (``g.T.reshape(x.shape)``),
    the values right but in the wrong order.
    """
    from itertools import permutations

    m, n = E2.shape
    if _close(E2, N2, rtol, atol):
        return None
    if m == n and m > 1 and _close(E2.T, N2, rtol, atol):
        return Diagnosis("transpose", "expected looks transposed: its transpose matches",
                         f"expected.T equals the numeric Jacobian ({m} x {n}) within tolerance")
    for side, shape in (("x", tuple(x_shape)), ("f(x)", tuple(out_shape))):
        if not 2 <= len(shape) <= 4 or int(np.prod(shape)) != (n if side == "x" else m):
            continue
        for perm in permutations(range(len(shape))):
            if perm == tuple(range(len(shape))):
                continue
            moved = tuple(shape[a] for a in perm)
            if side == "x":
                Np = N2.reshape((m,) + shape).transpose((0,) + tuple(1 + a for a in perm))
                Np = Np.reshape(m, n)
            else:
                Np = N2.reshape(shape + (n,)).transpose(perm + (len(shape),)).reshape(m, n)
            if not _close(E2, Np, rtol, atol):
                continue
            order = ", ".join(str(a) for a in perm)
            if moved == shape:
                return Diagnosis("transpose",
                                 f"the derivative is laid out with the axes of {side} transposed",
                                 f"the numeric derivative with the axes of {side} in the order "
                                 f"({order}) equals expected within tolerance")
            return Diagnosis("layout",
                             f"expected holds the right values in the wrong order: the axes of "
                             f"{side} transposed and then reshaped to {shape} "
                             f"(a `.T.reshape(...)`, or Fortran order?)",
                             f"the numeric derivative with the axes of {side} in the order "
                             f"({order}), shape {moved}, read in C order as {shape}, equals "
                             "expected within tolerance")
    return None


def _swapped(E2, N2, spec, rtol, atol, bugs):
    """The expected block of one input equals the numeric block of another."""
    if spec is None or len(spec.shapes) < 2:
        return None
    blocks = list(zip(spec.keys, spec.bounds, spec.shapes))
    wrong = [i for i, (_, (a, b), _) in enumerate(blocks) if bugs[:, a:b].any()]
    for i in wrong:
        ki, (a, b), si = blocks[i]
        for j, (kj, (c, d), sj) in enumerate(blocks):
            if j == i or si != sj:
                continue
            if _close(E2[:, a:b], N2[:, c:d], rtol, atol):
                both = _close(E2[:, c:d], N2[:, a:b], rtol, atol)
                name_i, name_j = _key(spec, ki), _key(spec, kj)
                msg = (f"the derivatives of {name_i} and {name_j} look swapped" if both else
                       f"the derivative given for {name_i} is the one of {name_j}")
                return Diagnosis("swapped", msg,
                                 f"expected[{name_i}] equals the numeric derivative w.r.t. "
                                 f"{name_j} within tolerance")
    return None


def _one_input(cols, spec, coord_label):
    """All wrong entries in one input of a tuple/dict x: name it."""
    if spec is None or len(spec.shapes) < 2 or not len(cols):
        return None
    for key, (a, b) in zip(spec.keys, spec.bounds):
        if np.all((cols >= a) & (cols < b)):
            others = [_key(spec, k) for k in spec.keys if k != key]
            return Diagnosis("input", f"only the derivative w.r.t. {_key(spec, key)} is wrong",
                             f"all {len(cols)} wrong entries are in its block; those of "
                             f"{', '.join(others)} pass")
    return None


def _input_first(found):
    """With several inputs, the wrong one leads, carrying the pattern of its error:
    "only the derivative w.r.t. x['b'] is wrong: a missing 1/8 (axis 0 of f(x))"."""
    inp = next((d for d in found if d.kind == "input"), None)
    pattern = next((d for d in found if d.kind in ("factor", "sign", "entry")), None)
    if inp is None or pattern is None:
        return found
    lead = Diagnosis("input", f"{inp.message}: {pattern.message}", inp.evidence)
    return [lead] + [d for d in found if d is not inp]


def _key(spec, k):
    return f"x[{k!r}]" if spec.kind == "dict" else f"x[{k}]"


def _row_or_column(rows, cols, R, K, out_label, in_label):
    if len(rows) < 2:
        return None
    if np.all(rows == rows[0]) and R > 1:
        r = int(rows[0])
        return Diagnosis("row", f"only one output is wrong: {_fmt(out_label(r), 'out')}",
                         f"all {len(rows)} wrong entries lie in row {r} of J")
    if np.all(cols == cols[0]) and K > 1:
        k = int(cols[0])
        return Diagnosis("column", f"only one input's derivative is wrong: {_fmt(in_label(k), 'in')}",
                         f"all {len(cols)} wrong entries lie in column {k} of J")
    return None


def _entry_label(problem, r, k):
    """``out[i] / in[j]``, as the report's worst-entries table names the entry."""
    from ..report import Mismatch

    return Mismatch(problem.out_label(r), problem.in_label(k), 0, 0, 0, 0, 0, 0, "bug").where


def _fmt(index, prefix):
    from ..report import Mismatch

    m = Mismatch(index if prefix == "out" else (), index if prefix == "in" else (), 0, 0, 0, 0,
                 0, 0, "bug")
    return m.where.split(" / ")[0] if prefix == "out" else m.where.split(" / ")[-1]


def diagnose(problem, judgement, *, full=False, x_shape=(), out_shape=(), spec=None,
             localized=()):
    """Diagnoses for a judged problem, most telling first."""
    out = []
    codes = judgement.codes
    if codes is not None and (codes == _BUG).any():
        rows, cols = np.nonzero(codes == _BUG)
        E = np.asarray(problem.expected[rows, cols], dtype=np.float64)
        # The best estimate of each entry: its second opinion when it had one.
        N = np.array([judgement.second.get((int(r), int(k)), problem.numeric[r, k])
                      for r, k in zip(rows, cols)], dtype=np.float64) if len(rows) <= 4096 else \
            np.asarray(problem.numeric[rows, cols], dtype=np.float64)
        smooth = np.array([(int(r), int(k)) not in judgement.at_kink for r, k in zip(rows, cols)],
                          dtype=bool) if judgement.at_kink else np.ones(len(rows), bool)
        dims = [(f"axis {a} of x", s) for a, s in enumerate(x_shape)]
        dims += [(f"axis {a} of f(x)", s) for a, s in enumerate(out_shape)]
        rtol, atol = problem.rtol, problem.atol
        where = None
        if full and len(rows) == 1:
            where = _entry_label(problem, int(rows[0]), int(cols[0]))
        for rule in (lambda: smooth.any() and _factor(E[smooth], N[smooth], dims, where),
                     lambda: full and _transposed(np.asarray(problem.expected, np.float64),
                                                  problem.numeric, max(rtol, 1e-6), atol,
                                                  x_shape, out_shape),
                     lambda: full and _swapped(np.asarray(problem.expected, np.float64),
                                               problem.numeric, spec, max(rtol, 1e-6), atol,
                                               codes == _BUG),
                     lambda: full and _one_input(cols, spec, problem.coord_label),
                     lambda: full and _row_or_column(rows, cols, problem.R, problem.K,
                                                     problem.out_label, problem.in_label)):
            d = rule()
            if d:
                out.append(d)
        out = _input_first(out)
    # Localisation first: the wrong input, then the wrong entry, then the patterns.
    found = [d for d in localized if isinstance(d, Diagnosis)]
    found += [Diagnosis("localized", f"the wrong entry is {entry.where}",
                        f"found by splitting a failing direction's support in "
                        f"{entry.search_evaluations} evaluations: expected "
                        f"{entry.expected:.6g}, numeric {entry.numeric:.6g}")
              for entry in localized if not isinstance(entry, Diagnosis)]
    out = found + out
    kinds = {"non-differentiable": "kinks", "discontinuous": "discontinuity",
             "inconclusive": "ill-conditioned"}
    said = set()
    severity = {"inconclusive": 0, "discontinuous": 1, "non-differentiable": 2}
    ranked = sorted(judgement.evidence, key=lambda e: severity.get(e[3], 9))
    for r, k, sentence, status in ranked:
        kind = kinds.get(status)
        if kind is None or kind in said:
            continue
        said.add(kind)
        message = {"kinks": "f is not differentiable within the step (kinks crossed)",
                   "discontinuity": "f is discontinuous within the step",
                   "ill-conditioned": "f is ill-conditioned at this step and dtype: the estimates "
                                      "do not settle; check in float64 or pass a step"}[kind]
        out.append(Diagnosis(kind, message, sentence))
    return out
