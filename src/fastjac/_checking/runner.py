"""The shared body of the public checks (:mod:`fastjac.check`).

Argument handling that every check shares (the expected value's layout and
labels, the mode, the count options), the measure-judge-report sequence
(:func:`run_check`), localisation of failing directions, the warm fast path
of small full checks, and the VJP/JVP expected sides.  ``fastjac.check``
holds the public functions and their documentation; this module holds what
they have in common.
"""
from __future__ import annotations

import numpy as np

from .. import tolerances as T
from .._inputs import is_multi, pack_like, parts_like
from .._validate import check_int, check_seed, describe, make_rng, real_array
from .._vocabulary import STATUS_CODES
from ..report import Diagnosis, Mismatch
from .assemble import early, finish, nonfinite_note
from .build import determinism_failure, directional, first_pass_order, full, release
from .diagnose import diagnose
from .fastcheck import lookup as fast_check, remember as fast_remember_check
from .judging import judge
from .localize import localize

__all__ = ["GRAD_MODES", "JACOBIAN_MODES", "JACOBIAN_FULL_MAX", "ROWS_MAX", "check_mode",
           "match_shape", "as_expected", "unravel", "container_label", "expected_matrix",
           "run_check", "validate_counts", "nan_guard", "warm_check", "retolerance", "call_like",
           "reshape_report", "vjp_check", "jvp_cols", "fast_remember_check"]

#: Check modes: mode -> what it does (documentation and error messages).
GRAD_MODES = {
    "auto": "full below `full_max` inputs, sampled + directional above",
    "full": "every partial derivative",
    "sampled": "`samples` random coordinates, one batched stack",
    "directional": "`directions` random directions, compared per output",
    "sampled+directional": "both, in one batched stream",
}
JACOBIAN_MODES = GRAD_MODES

#: ``check_jacobian(mode='auto')`` checks every column up to this many inputs.
#: Measured in ``benchmarks/bench_check.py``: a full check costs ``2 n``
#: points, a directional one ``2 (samples + directions)`` and one product of
#: ``expected`` with the directions; at 256 inputs the full check of a cheap
#: f is still within a few times the directional one, and above it the gap
#: grows as ``n``.
JACOBIAN_FULL_MAX = 256
#: ``check_vjp`` builds the whole expected J from ``vjp_fn`` rows up to this
#: many outputs (``check_jvp``: columns up to this many inputs), then checks
#: it as ``check_jacobian`` does; above, random cotangents plus sampled outputs.
ROWS_MAX = 64


def check_mode(mode):
    if not isinstance(mode, str) or mode not in GRAD_MODES:
        raise ValueError(f"`mode` must be one of {list(GRAD_MODES)}; got {describe(mode)}.")


def squeezed(shape):
    return tuple(s for s in shape if s != 1)


def match_shape(expected, want, name="expected"):
    """Reshape ``expected`` to ``want`` if equal up to size-1 axes; note or raise."""
    if expected.shape == tuple(want):
        return expected, None
    if expected.size == int(np.prod(want)) and squeezed(expected.shape) == squeezed(want):
        return expected.reshape(want), (
            f"`{name}` has shape {expected.shape} and the numeric Jacobian {tuple(want)}; "
            "they were compared after dropping size-1 axes.")
    hint = (" Same number of entries: a transposed or reordered layout?"
            if expected.size == int(np.prod(want)) else "")
    raise ValueError(
        f"`{name}` must have the shape of the numeric Jacobian, f(x).shape + x.shape = "
        f"{tuple(want)} (size-1 axes may differ); got {expected.shape}.{hint}")


def as_expected(value, name):
    return real_array(value, name, "biuf", "array_like of real numbers")


def unravel(shape):
    def label(i):
        return tuple(int(v) for v in np.unravel_index(i, shape)) if shape else ()
    return label


def container_label(spec):
    def label(j):
        for key, (a, b), shape in zip(spec.keys, spec.bounds, spec.shapes):
            if a <= j < b:
                return (f"[{key!r}]", unravel(shape)(j - a))
        return (j,)
    return label


def expected_matrix(prep, expected, name, notes):
    """The expected Jacobian as ``(m, n)`` over the packed inputs (a view when possible)."""
    out_shape, spec = prep.out_shape, prep.spec
    if spec is None:
        E = as_expected(expected, name)
        E, note = match_shape(E, out_shape + prep.x_shape, name)
        notes += [note] if note else []
        return E.reshape(prep.m, prep.n), [E.dtype]
    blocks, dtypes = [], []
    for k, p, shape in zip(spec.keys, parts_like(spec, expected, name), spec.shapes):
        b, note = match_shape(as_expected(p, f"{name}[{k!r}]"), out_shape + shape,
                               f"{name}[{k!r}]")
        notes += [note] if note else []
        blocks.append(b.reshape(prep.m, -1))
        dtypes.append(b.dtype)
    return np.concatenate(blocks, axis=1), dtypes


def report_split(prep, lead):
    spec = prep.spec
    if spec is None:
        return None
    return lambda a: spec.split(a.reshape(lead + (prep.n,)), lead)


def judge_and_report(st, problem, center, batched, *, full_mode, shape, split, expected_of=None,
                      blocks=None, dense_rows=0):
    try:
        return _judge_and_report(st, problem, center, batched, full_mode=full_mode,
                                 shape=shape, split=split, expected_of=expected_of,
                                 blocks=blocks, dense_rows=dense_rows)
    finally:
        release(problem)  # its directions' buffer serves the thread's next check


def _judge_and_report(st, problem, center, batched, *, full_mode, shape, split, expected_of,
                      blocks, dense_rows):
    bad = determinism_failure(st, center, batched)
    if bad:
        return early(st, "non-deterministic", st.prep.fx, bad)
    j = judge(problem)
    found = []
    if not full_mode and j.codes is not None and expected_of is not None:
        found = localize_failures(st, problem, j, expected_of, blocks, dense_rows)
    if j.verdict == "nan":
        exp = np.asarray(problem.expected, dtype=np.float64)
        if not np.all(np.isfinite(exp)):
            st.notes.insert(0, nonfinite_note("`expected`", exp.reshape(st.prep.out_shape + (-1,))
                                              if full_mode and st.prep.spec is None else exp))
    diagnoses = diagnose(problem, j, full=full_mode, x_shape=st.prep.x_shape,
                         out_shape=st.prep.out_shape, spec=st.prep.spec, localized=found)
    return finish(st, problem, j, shape=shape, split=split, diagnoses=diagnoses, localized=found,
                  step=None if full_mode else problem.directions.step)


def localize_failures(st, problem, j, expected_of, blocks, dense_rows=0):
    """Culprits of the worst failing direction (dense columns only).

    With cotangents (``check_vjp`` of many outputs), the rows from
    ``dense_rows`` on are random cotangents over every output: the worst of
    those is localised first (its first split names the wrong input), then the
    worst of the sampled outputs (which names an entry).
    """
    s = len(problem.directions.index)
    bug = STATUS_CODES["bug"]
    dense = j.codes[:, s:] == bug
    if not dense.any():
        return []
    rows, cols = np.nonzero(dense)
    cols = cols + s
    gap = np.abs(problem.expected[rows, cols] - problem.numeric[rows, cols])
    ratio = gap / problem.tolerance(rows, cols)
    groups = [rows >= dense_rows, rows < dense_rows] if dense_rows else [rows >= 0]
    h = st.prep.steps(st.step)
    out = []
    for group in groups:
        if not group.any():
            continue
        i = int(np.flatnonzero(group)[np.argmax(ratio[group])])
        r, c = int(rows[i]), int(cols[i])
        delta = float(problem.expected[r, c] - j.second.get((r, c), problem.numeric[r, c]))
        found = localize(problem, r, c, delta, expected_of, h, blocks=blocks)
        out.append(culprit(problem, found))
    return out


def culprit(problem, found):
    """A localisation result as a Mismatch (or, when spread, a Diagnosis)."""
    label = problem.coord_label or problem.in_label
    first, last = label(int(found.group[0])), label(int(found.group[-1]))
    spec = problem.prep.spec
    if (found.spread or len(found.group) != 1) and spec is not None:
        for key, (a, b) in zip(spec.keys, spec.bounds):
            if found.group[0] >= a and found.group[-1] < b:
                name = f"x[{key!r}]" if spec.kind == "dict" else f"x[{key}]"
                whole = len(found.group) == b - a
                return Diagnosis("input", f"the wrong input is {name}" + (
                    "" if not whole else ": its derivative is wrong throughout"),
                    f"splitting a failing direction's support by input, only {name}'s part "
                    f"carries the mismatch ({found.evaluations} evaluations)")
    if found.spread or len(found.group) != 1:
        where = Mismatch(problem.out_label(found.r), first, 0, 0, 0, 0, 0, 0, "bug").where
        return Diagnosis("spread", f"the mismatch is spread over {len(found.group)} coordinates "
                         f"(from {where} to {Mismatch((), last, 0, 0, 0, 0, 0, 0, 'bug').where})",
                         f"after splitting a failing direction's support, both halves still "
                         f"carry it ({found.evaluations} evaluations)")
    e, q = found.expected, found.numeric
    ab = abs(e - q)
    return Mismatch(problem.out_label(found.r), first, e, q, ab,
                    ab / max(abs(e), abs(q), 1e-300), float("nan"), float("nan"), "bug",
                    search_evaluations=found.evaluations)


def run_check(st, E2, *, mode, seed, samples, directions, full_max, x, f, kind_full, kind_dir,
         contract=None, expected_of=None, out_label=None, expected_cols=None, dense_rows=0):
    """The shared body of the checks: choose the mode, measure, judge, report."""
    prep = st.prep
    n = prep.n
    if mode == "auto":
        mode = "full" if n <= full_max else "sampled+directional"
    spec = prep.spec
    coord = container_label(spec) if spec is not None else unravel(prep.x_shape)
    out_label = out_label or unravel(prep.out_shape)
    lead = prep.out_shape if contract is None else (contract.shape[0],)
    if mode == "full":
        st.kind = kind_full
        problem, center, batched = full(st, E2, out_label=out_label, in_label=coord,
                                        shape=None, f=f, x=x)
        problem.coord_label = coord
        shape = lead + (prep.x_shape if spec is None else (n,))
        return judge_and_report(st, problem, center, batched, full_mode=True, shape=shape,
                                 split=report_split(prep, lead))
    st.kind = f"{kind_dir}/{mode}"
    s = samples if "sampled" in mode else 0
    k = directions if "directional" in mode else 0
    if s + k == 0:
        raise ValueError("`samples` and `directions` are both 0: nothing to check.")
    rng = make_rng(seed)
    expected_of = expected_of or (lambda V: np.asarray(E2 @ np.asarray(V, E2.dtype).T, np.float64))
    expected_cols = expected_cols or (lambda idx: np.asarray(E2[:, idx], np.float64))
    s_eff = min(s, n)

    def in_label(c):
        return coord(int(problem.directions.index[c])) if c < s_eff else f"direction {c - s_eff}"

    problem, center, batched = directional(
        st, expected_cols=expected_cols, expected_of=expected_of, samples=s, count=k, rng=rng,
        contract=contract, out_label=out_label, in_label=in_label)
    problem.coord_label = coord
    st.notes.append(f"checked {s_eff} sampled coordinate(s) of {n} and {k} random "
                    f"direction(s) (seed={seed!r}); see check_grad's Notes for the miss "
                    "probabilities.")
    blocks = list(spec.bounds) if spec is not None else None
    shape = lead + (problem.K,)
    return judge_and_report(st, problem, center, batched, full_mode=False, shape=shape,
                             split=None, expected_of=expected_of, blocks=blocks,
                             dense_rows=dense_rows)


def validate_counts(samples, directions, full_max, seed):
    if type(samples) is type(directions) is type(full_max) is int and seed == 0 and \
            type(seed) is int and samples >= 0 and directions >= 0 and full_max >= 0:
        return  # the defaults (a test suite's every call): nothing to check
    check_int(samples, "samples")
    check_int(directions, "directions")
    check_int(full_max, "full_max")
    check_seed(seed)


def nan_guard(st):
    fx = st.prep.fx
    if fx.size and not np.all(np.isfinite(fx)):
        return early(st, "nan", fx, nonfinite_note("f(x)", fx))
    return None


def warm_check(f, x, expected, kind, mode, full_max, method, order, step, vectorized, max_memory,
               executor, rtol, atol):
    """``(report, f0, points)``: a full check answered by its warm fast path.

    On a miss the report is None, and ``f0`` (``f(x)``, if the fast path got as
    far) and ``points`` (what it evaluated) go to the general path, which
    reuses the one and counts the other.
    """
    if type(x) is not np.ndarray or step is not None or max_memory is not None or \
            executor is not None or not (mode == "full" or (mode == "auto" and x.size <= full_max)):
        return None, None, 0
    if order is None:
        try:
            order = first_pass_order(method, x.dtype if x.dtype.kind == "f" else np.float64, rtol)
        except (ValueError, TypeError):
            return None, None, 0  # bad method or rtol: the general path names it
    fc = fast_check(f, x, expected, kind, method, order, vectorized, rtol, atol)
    return (None, None, 0) if fc is None else fc(f, x, expected)


def retolerance(st, dtypes, rtol, atol):
    st.dtype = T.tolerance_dtype(st.dtype, *dtypes)
    st.tol = T.tolerance_for(st.dtype, rtol=rtol, atol=atol)


def call_like(fn, x):
    if isinstance(x, dict) and is_multi(x):
        return fn(**x)
    if isinstance(x, tuple) and is_multi(x):
        return fn(*x)
    return fn(x)


def reshape_report(report, shape):
    """A full gradient check reports arrays shaped like x (the loss's axes dropped)."""
    for name in ("numeric", "expected"):
        value = getattr(report, name)
        if isinstance(value, np.ndarray):
            setattr(report, name, value.reshape(shape))
    noise, status = report._figures.get("noise"), report._figures.get("status")
    if callable(noise):
        report._figures["noise"] = lambda: np.asarray(noise()).reshape(shape)
    if callable(status):
        report._figures["status"] = lambda: np.asarray(status()).reshape(shape)
    if report.status_codes is not None:
        report.status_codes = report.status_codes.reshape(shape)


def shaped_like(value, shape, name, what):
    """``value`` as a real array of ``shape`` (size-1 axes may differ), or a clear error."""
    arr = as_expected(value, name)
    if arr.shape != tuple(shape):
        if arr.size == int(np.prod(shape)) and squeezed(arr.shape) == squeezed(shape):
            return arr.reshape(shape)
        raise ValueError(f"`{name}` must return an array shaped like {what} {tuple(shape)}; "
                         f"got {arr.shape}.")
    return arr


def flat_like_x(prep, value, name):
    """A value shaped like x (or a container like x) as a flat float64 vector."""
    if prep.spec is not None:
        flat, _ = pack_like(prep.spec, value, name)
        return np.asarray(flat, np.float64).reshape(-1)
    return shaped_like(value, prep.x_shape, name, "x").reshape(-1).astype(np.float64)


def unflat_x(prep, flat):
    flat = flat.astype(prep.x0.dtype)
    if prep.spec is None:
        return flat.reshape(prep.x_shape)
    parts = prep.spec.unpack(flat)
    return parts


def vjp_rows(prep, vjp_fn, U):
    """``A[l] = vjp_fn(U[l])`` flattened over the packed inputs."""
    out_dtype = prep.fx.dtype if prep.fx.dtype.kind == "f" else np.float64
    A = np.empty((U.shape[0], prep.n))
    for l in range(U.shape[0]):
        A[l] = flat_like_x(prep, vjp_fn(U[l].reshape(prep.out_shape).astype(out_dtype)),
                            "vjp_fn(u)")
    return A


def jvp_cols(prep, jvp_fn, V):
    """``jvp_fn(v)`` for each row ``v`` of ``V``, as columns ``(m, k)``."""
    C = np.empty((prep.m, V.shape[0]))
    for l in range(V.shape[0]):
        out = shaped_like(jvp_fn(unflat_x(prep, np.asarray(V[l]))), prep.out_shape, "jvp_fn",
                          "f(x)")
        C[:, l] = out.reshape(-1)
    return C


def vjp_check(st, vjp_fn, *, directions, seed, samples, x, f, kind):
    prep = st.prep
    m = prep.m
    if m <= ROWS_MAX:
        # Every row of J from the VJP, then a full (or sampled+directional) check:
        # a per-output comparison, as powerful as check_jacobian.
        E2 = vjp_rows(prep, vjp_fn, np.eye(m))
        return run_check(st, E2, mode="auto", seed=seed, samples=samples, directions=directions,
                    full_max=JACOBIAN_FULL_MAX, x=x, f=f, kind_full=kind, kind_dir=kind)
    rng = make_rng(seed)
    outs = np.sort(rng.choice(m, size=min(ROWS_MAX // 8, m), replace=False))
    U = np.zeros((len(outs) + directions, m))
    U[np.arange(len(outs)), outs] = 1.0            # sampled outputs, compared one by one
    U[len(outs):] = rng.standard_normal((directions, m))
    A = vjp_rows(prep, vjp_fn, U)
    out_label = unravel(prep.out_shape)

    def row_label(r):
        return out_label(int(outs[r])) if r < len(outs) else f"cotangent {r - len(outs)}"

    return run_check(st, A, mode="sampled+directional", seed=rng, samples=samples,
                directions=directions, full_max=JACOBIAN_FULL_MAX, x=x, f=f, kind_full=kind,
                kind_dir=kind, contract=U, out_label=row_label, dense_rows=len(outs))
