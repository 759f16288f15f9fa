"""Derivative checks with a verdict you can trust.

Every check reduces to the same pipeline (``_run``):

1. guards: ``f(x)`` and the expected values must be finite, and two calls
   of ``f`` at ``x`` must agree (non-determinism makes any finite
   difference meaningless);
2. one batched 4th-order central Jacobian of a (possibly reduced) function,
   with the 2nd-order estimate from the *same* evaluations: their
   difference bounds the truncation error; round-off is ``EPS |f| / h``;
3. every entry outside ``atol + rtol |expected|`` gets a second opinion
   from nine fresh points at a quarter of the step: if the re-estimate
   agrees with the expected value, the first was finite-difference noise;
   if the secant slopes show a kink, the point is non-differentiable and
   the expected value is judged against the one-sided slopes; otherwise
   the mismatch is a likely bug.

Gradients of scalar losses are checked in full for small inputs and by
sampled coordinates plus random directions for large ones; VJPs and JVPs
are checked through the inner-product identity without forming J.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from . import tolerances as _tol
from ._guards import describe_positions, determinism, nonfinite_positions, second_opinion
from ._inputs import is_multi, pack, pack_like
from ._memo import FunctionMemo
from .report import VERDICTS, JacobianCheck, Mismatch
from ._validate import as_point, describe
from .engine import jacobian_with_info
from .stencils import get_stencil
from .steps import eps_for, relative_step

__all__ = ["check_jacobian", "check_grad", "check_vjp", "check_jvp", "assert_jacobian",
           "assert_grad", "assert_vjp", "assert_jvp", "numeric_jacobian_test", "GRAD_MODES"]

#: Order used by the checks when ``order`` is not given: one above each
#: method's natural order, so that a lower-order estimate comes for free.
CHECK_ORDER = {"central": 4, "forward": 2, "backward": 2, "complex": 2}

#: (method, order) -> weights over the stencil's offsets of a lower-order
#: estimate from the same evaluations; |J - lower| bounds J's truncation error.
LOWER_ESTIMATE = {
    ("central", 4): (0.0, -0.5, 0.5, 0.0),
    ("central", 6): (0.0, 1 / 12, -2 / 3, 2 / 3, -1 / 12, 0.0),
    ("forward", 2): (-1.0, 1.0, 0.0),
    ("backward", 2): (0.0, -1.0, 1.0),
}

#: check_grad modes: mode -> what it does (documentation and error messages).
GRAD_MODES = {
    "auto": "full below `full_max` inputs, sampled + directional above",
    "full": "every partial derivative",
    "sampled": "`samples` random coordinates, one batched stack",
    "directional": "`directions` random Gaussian directions, g.v against the numeric jvp",
    "sampled+directional": "both, in one batched stack",
}

_MAX_REVIEWED_COLUMNS = 32
#: Stop reviewing once this many columns hold a confirmed bug.
_CONFIRMED_ENOUGH = 4
_WORST = 10
_JAC_OPTIONS = ("method", "order", "step", "vectorized", "max_memory", "executor", "progress")


# ---------------------------------------------------------------------------
# The problem every check reduces to
# ---------------------------------------------------------------------------
@dataclass
class _Problem:
    """Compare ``Q = C @ J_g(t0)`` (``C`` optional) with ``expected``, shape (R, K)."""

    g: object
    t0: np.ndarray
    expected: np.ndarray          # (R, K) float64
    tol: object                   # callable (Q, Jn) -> (R, K)
    out_label: object             # r -> index
    in_label: object              # j -> index
    contract: np.ndarray | None = None
    step: object = None
    input_scale: np.ndarray | None = None   # (K,) scale of the inputs moved by column j
    shape: tuple | None = None    # shape of the reported numeric/expected (default (R, K))


def _split_options(options):
    unknown = sorted(set(options) - set(_JAC_OPTIONS))
    if unknown:
        raise TypeError(
            f"unexpected keyword argument(s) {unknown}; the checks accept rtol, atol and "
            f"the jacobian options {list(_JAC_OPTIONS)}.")
    opts = dict(options)
    method = opts.setdefault("method", "central")
    if opts.get("order") is None:
        if method not in CHECK_ORDER:
            get_stencil(method)  # raises the table's error message
        opts["order"] = CHECK_ORDER[method]
    get_stencil(method, opts["order"])
    return opts


def _nonfinite_report(kind, what, arr, method, nfev, tol, dtype, notes=()):
    where, count = nonfinite_positions(arr)
    arr = np.asarray(arr, dtype=np.float64)
    return JacobianCheck(
        passed=False, verdict="nan", numeric=arr, expected=arr, error_norm=float("nan"),
        max_abs_error=float("nan"), max_rel_error=float("nan"), worst=[],
        noise=np.full(arr.shape, np.nan), nfev=nfev, method=method, step=None,
        rtol=tol.rtol, atol=tol.atol, dtype=dtype, kind=kind,
        notes=[f"{what} is NaN or inf at {describe_positions(where, count)} "
               f"({count} of {arr.size} entries); nothing was compared.", *notes])


def _guard_f(f, x_point, kind, method, tol, dtype):
    """NaN/inf and non-determinism at x; returns (fx, report or None, nfev)."""
    fx = np.asarray(f(np.array(x_point, copy=True)))
    if fx.dtype.kind not in "biuf":
        raise TypeError(f"`f` must return real numbers; got {describe(fx)}.")
    if not np.all(np.isfinite(fx)):
        return fx, _nonfinite_report(kind, "f(x)", fx, method, 1, tol, dtype), 1
    eps = eps_for(np.asarray(x_point).dtype, fx.dtype)
    ok, diff = determinism(f, np.asarray(x_point), fx, eps)
    if not ok:
        rep = JacobianCheck(
            passed=False, verdict="non-deterministic", numeric=np.asarray(fx, float),
            expected=np.asarray(fx, float), error_norm=float("nan"),
            max_abs_error=float("nan"), max_rel_error=float("nan"), worst=[],
            noise=np.zeros(fx.shape), nfev=2, method=method, step=None, rtol=tol.rtol,
            atol=tol.atol, dtype=dtype, kind=kind,
            notes=[f"two calls of f at the same x disagree by up to {diff:.3g}: f is not "
                   "deterministic (dropout, sampling, an unseeded RNG, or state kept between "
                   "calls), so finite differences of it mean nothing. Fix the randomness "
                   "(seed it inside f) and check again."])
        return fx, rep, 2
    return fx, None, 2


def _run(problem: _Problem, opts, tol, dtype, kind, nfev0=0, notes=()):
    """Numeric estimate, noise, second opinions and verdict for one problem."""
    t_start = time.perf_counter()
    notes = list(notes)
    method, order = opts["method"], opts["order"]
    stencil = get_stencil(method, order)
    lower = LOWER_ESTIMATE.get((method, order))
    jac_opts = {k: v for k, v in opts.items() if k != "step"}
    step = problem.step if problem.step is not None else opts.get("step")
    user_f = _user_function(problem.g)
    memo_key = (problem.t0.shape, problem.t0.dtype.str, getattr(problem.g, "x_shape", None))
    auto = jac_opts.get("vectorized", "auto") == "auto"
    if auto and _BATCHED.get(user_f, memo_key) is not None:
        jac_opts["vectorized"] = _BATCHED.get(user_f, memo_key)
    J, info = jacobian_with_info(problem.g, problem.t0, step=step,
                                 combos=[lower] if lower else None, **jac_opts)
    if auto and info.strategy in ("vectorized", "loop", "numba"):
        _BATCHED.set(user_f, memo_key, info.strategy == "vectorized")
    nfev = nfev0 + info.nfev
    m, K = info.fx.size, problem.t0.size
    Jn = np.asarray(J, dtype=np.float64).reshape(m, K)
    eps = info.eps
    h = np.asarray(info.step, dtype=np.float64).reshape(K)
    fx = info.fx.reshape(-1).astype(np.float64)
    rms = float(np.sqrt(np.mean(fx ** 2))) if fx.size else 0.0
    fscale = np.maximum(np.abs(fx), rms)
    wsum = 1.0 if stencil.complex_step else float(np.sum(np.abs(stencil.weights)))
    in_scale = (problem.input_scale if problem.input_scale is not None
                else np.maximum(1.0, np.abs(problem.t0.reshape(K).astype(np.float64))))
    with np.errstate(invalid="ignore", over="ignore"):
        # Round-off: each evaluation carries ~ROUNDOFF_FACTOR*EPS*|f|, the
        # stencil adds wsum of them over h; the perturbed x itself is rounded
        # to EPS*|x|, a relative error EPS*|x|/h of the step.
        noise_J = (_tol.ROUNDOFF_FACTOR * eps * wsum * fscale[:, None] / h[None, :]
                   + eps * in_scale[None, :] / h[None, :] * np.abs(Jn))
        if stencil.complex_step:
            noise_J = 4 * eps * np.abs(Jn) + eps * np.abs(Jn)
        if lower:
            noise_J = noise_J + np.abs(Jn - np.asarray(info.extra[0], np.float64).reshape(m, K))
        else:
            notes.append(f"{method}-{order} has no lower-order estimate from the same points; "
                         "the noise estimate covers round-off only.")
    C = problem.contract
    if C is None:
        Q, noiseQ = Jn, noise_J
    else:
        Q, noiseQ = C @ Jn, np.abs(C) @ noise_J
    E = problem.expected
    tolQ = problem.tol(Q, Jn)
    status = np.full(Q.shape, "ok", dtype=object)
    second = np.full(Q.shape, np.nan)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(Q - E)
    bad = ~np.isfinite(Q) | ~np.isfinite(E)
    status[bad] = "nan"
    if np.any(~np.isfinite(Q)):
        where, count = nonfinite_positions(Q)
        notes.append(f"the numeric estimate is NaN or inf at {describe_positions(where, count)}: "
                     "f is not finite at a perturbed point near x (a log or division near "
                     "its singularity?); move x or pass a smaller step.")
    flagged = ~bad & (err > tolQ)
    reviewed = 0
    if np.any(flagged):
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = np.where(flagged, err / (tolQ + _tol.NOISE_FACTOR * noiseQ + 1e-300), 0)
        col_rank = np.argsort(-ratio.max(axis=0), kind="stable")
        cols = [int(j) for j in col_rank if flagged[:, j].any()][:_MAX_REVIEWED_COLUMNS]
        vectorized = info.strategy == "vectorized"
        t0 = as_point(problem.t0)  # the engine's working dtype, so steps match
        flat_t = t0.reshape(-1)
        confirmed = 0
        # The complex step is ~EPS; the real 9-point second opinion needs a
        # real-sized step: the one central-4 would take for this column.
        href = h * (relative_step(get_stencil("central", 4), eps) / relative_step(stencil, eps)
                    if stencil.complex_step else 1.0)
        for j in cols:
            d = float(((flat_t[j] + href[j] / 4) - flat_t[j])) or href[j] / 4
            op, used = second_opinion(problem.g, t0, j, d, vectorized)
            nfev += used
            reviewed += 1
            if C is not None:
                op = op.contract(C)
            rows = np.flatnonzero(flagged[:, j])
            fs = fscale if C is None else np.abs(C) @ fscale
            for r in rows:
                _judge(r, j, op, E, tolQ, Q, fs[r], eps, d, status, second)
            confirmed += bool(np.any(status[:, j] == "bug"))
            if confirmed >= _CONFIRMED_ENOUGH:
                break  # the verdict is settled; spare the evaluations
        rest = flagged & (status == "ok")
        # Columns beyond the review budget keep the first estimate's judgement.
        status[rest & (err <= tolQ + _tol.NOISE_FACTOR * noiseQ)] = "noise"
        status[rest & (err > tolQ + _tol.NOISE_FACTOR * noiseQ)] = "bug"
        if rest.any():
            notes.append(f"{int(flagged.any(axis=0).sum()) - reviewed} flagged column(s) were "
                         "judged from the first estimate alone (second opinions stop after "
                         f"{_CONFIRMED_ENOUGH} confirmed bugs or {_MAX_REVIEWED_COLUMNS} columns).")
    counts = {s: int(np.sum(status == s)) for s in ("ok", "noise", "non-differentiable", "bug", "nan")}
    verdict = _verdict(counts)
    if counts["non-differentiable"]:
        notes.append("f is not differentiable within the step at some entries (a kink: relu or "
                     "abs at 0?); the expected values there lie between the one-sided slopes, "
                     "which is all a derivative check can ask of them.")
    if counts["noise"]:
        notes.append("some entries differ by more than the tolerance but a second estimate at a "
                     "quarter of the step agrees with the expected values: finite-difference noise.")
    worst = _worst(Q, E, err, tolQ, noiseQ, status, second, problem, atol=tol.atol)
    finite = ~bad
    rel = _relative_error(err, E, Q, tol.atol)
    shape = problem.shape or Q.shape
    return JacobianCheck(
        passed=VERDICTS[verdict], verdict=verdict, numeric=Q.reshape(shape),
        expected=E.reshape(shape),
        error_norm=float(np.linalg.norm(np.where(finite, Q - E, 0.0))),
        max_abs_error=float(np.max(err[finite], initial=0.0)),
        max_rel_error=float(np.max(rel[finite], initial=0.0)),
        worst=worst, noise=noiseQ.reshape(shape), nfev=nfev,
        method=f"{method}-{order}", step=info.step, rtol=tol.rtol, atol=tol.atol, dtype=dtype,
        kind=kind, status=status.reshape(shape), notes=notes, counts=counts,
        seconds=time.perf_counter() - t_start)


def _judge(r, j, op, E, tolQ, Q, fscale, eps, d, status, second):
    """Status of one flagged entry from its second opinion."""
    e, tol = E[r, j], tolQ[r, j]
    d6 = op.d6[r]
    second[r, j] = d6
    if not np.isfinite(d6):
        status[r, j] = "nan"
        return
    # Round-off of the 9-point estimates: sum|w6| = 1.53, secants 2, cubic residual <~ 4 secants.
    rnd = _tol.ROUNDOFF_FACTOR * eps * fscale / d
    noise2 = abs(d6 - op.d4[r]) + 1.6 * rnd
    miss = abs(e - d6)
    if miss <= tol + _tol.NOISE_FACTOR * noise2:
        status[r, j] = "noise"
        return
    from ._guards import KINK_RESIDUAL

    kink = op.kink[r]
    if kink > 0.5 * KINK_RESIDUAL * miss and kink > _tol.NOISE_FACTOR * 8 * rnd:
        lo, hi = op.secants[:, r].min(), op.secants[:, r].max()
        slack = tol + _tol.NOISE_FACTOR * 2 * rnd
        status[r, j] = "non-differentiable" if lo - slack <= e <= hi + slack else "bug"
        return
    status[r, j] = "bug"


def _verdict(counts):
    if counts["nan"]:
        return "nan"
    if counts["bug"]:
        return "fail"
    if counts["non-differentiable"]:
        return "non-differentiable"
    if counts["noise"]:
        return "noise"
    return "pass"


def _relative_error(err, expected, numeric, atol):
    """``err / max(|expected|, |numeric|, atol)``: symmetric, bounded, and small
    where both values are zero to within ``atol`` (a raw ratio would call
    0 against -1e-17 a 100% error)."""
    scale = np.maximum(np.maximum(np.abs(expected), np.abs(numeric)), atol)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(scale > 0, err / np.where(scale > 0, scale, 1.0), 0.0)


def _worst(Q, E, err, tolQ, noiseQ, status, second, problem, n=_WORST, atol=0.0):
    severity = {"nan": 4, "bug": 3, "non-differentiable": 2, "noise": 1, "ok": 0}
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = np.nan_to_num(err / np.where(tolQ > 0, tolQ, 1e-300), nan=np.inf, posinf=np.inf)
    sev = np.vectorize(severity.get, otypes=[float])(status) if status.size else status
    # Sort by status severity, then by how far outside the tolerance.
    order = np.lexsort((-ratio.ravel(), -np.asarray(sev, float).ravel()))[:n]
    out = []
    for flat in order:
        r, j = np.unravel_index(flat, Q.shape)
        e, q = float(E[r, j]), float(Q[r, j])
        ab = float(err[r, j])
        out.append(Mismatch(
            output_index=problem.out_label(int(r)), input_index=problem.in_label(int(j)),
            expected=e, numeric=q, abs_error=ab,
            rel_error=float(_relative_error(ab, e, q, atol)),
            tolerance=float(tolQ[r, j]), noise=float(noiseQ[r, j]), status=str(status[r, j]),
            second_opinion=None if np.isnan(second[r, j]) else float(second[r, j])))
    return out


# ---------------------------------------------------------------------------
# Shapes and labels
# ---------------------------------------------------------------------------
def _squeezed(shape):
    return tuple(s for s in shape if s != 1)


def _match_shape(expected, want, name="expected"):
    """Reshape ``expected`` to ``want`` if equal up to size-1 axes; note or raise."""
    if expected.shape == tuple(want):
        return expected, None
    if expected.size == int(np.prod(want)) and _squeezed(expected.shape) == _squeezed(want):
        return expected.reshape(want), (
            f"`{name}` has shape {expected.shape} and the numeric Jacobian {tuple(want)}; "
            "they were compared after dropping size-1 axes.")
    hint = (" Same number of entries: a transposed or reordered layout?"
            if expected.size == int(np.prod(want)) else "")
    raise ValueError(
        f"`{name}` must have the shape of the numeric Jacobian, f(x).shape + x.shape = "
        f"{tuple(want)} (size-1 axes may differ); got {expected.shape}.{hint}")


def _as_expected(value, name):
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"`{name}` must be array_like of real numbers; got {describe(value)}.")
    return arr


def _unravel(shape):
    def label(i):
        return tuple(int(v) for v in np.unravel_index(i, shape)) if shape else ()
    return label


def _container_label(spec):
    def label(j):
        for key, (a, b), shape in zip(spec.keys, spec.bounds, spec.shapes):
            if a <= j < b:
                return (f"[{key!r}]", _unravel(shape)(j - a))
        return (j,)
    return label


def _entry_tol(tol):
    def fn(Q, Jn, E):
        return tol.atol + tol.rtol * np.abs(E)
    return fn


def _dtype_of(*arrays):
    return _tol.tolerance_dtype(*[np.asarray(a).dtype for a in arrays if a is not None])


# ---------------------------------------------------------------------------
# check_jacobian
# ---------------------------------------------------------------------------
def check_jacobian(f, x, expected, *, rtol=None, atol=None, **jacobian_options):
    """Compare an analytic Jacobian with a noise-aware numeric one.

    Parameters
    ----------
    f : callable
        ``f(x)`` returns a scalar or an array (for tuple/dict ``x``:
        ``f(*x)`` / ``f(**x)``).
    x : array_like or tuple/dict of array_like
        The point; never modified.
    expected : array_like, shape f(x).shape + x.shape
        The analytic Jacobian under test (size-1 axes may differ, as in the
        notebook's ``(1, 4)`` against ``(4,)``).  For tuple/dict ``x``, a
        container of the same kind with one block per input.
    rtol, atol : float, optional
        Per-entry tolerance ``atol + rtol * |expected|``.  Default: the
        table in :mod:`fastjac.tolerances` for the least precise dtype of
        x, f(x) and expected.  Never scaled with the output size.
    **jacobian_options
        ``method``, ``order``, ``step``, ``vectorized``, ``max_memory``,
        ``executor``, ``progress`` as in :func:`fastjac.jacobian`.  The
        default stencil is central of order 4.

    Returns
    -------
    JacobianCheck
        ``report.passed``, ``report.verdict``, the matrices, error figures,
        the worst entries with their indices, statuses and noise.

    Raises
    ------
    ValueError
        If ``expected`` and the numeric Jacobian differ in shape beyond
        size-1 axes (both shapes are named).

    Notes
    -----
    The numeric Jacobian ``J4`` is the 4th-order central estimate; the
    2nd-order estimate ``J2`` at the same step comes from the same
    evaluations, and ``|J4 - J2|`` (the truncation error of ``J2``, an
    upper estimate of ``J4``'s) plus round-off ``4 EPS |f| sum|w| / h`` is
    the noise.  An entry outside ``atol + rtol |expected|`` is re-estimated
    from nine points at ``h/4`` (6th order); it is *noise* if the
    re-estimate agrees with ``expected`` within tolerance plus three times
    its own noise, *non-differentiable* if the secant slopes show a kink
    and ``expected`` lies between them, and a *bug* otherwise.

    Examples
    --------
    >>> import numpy as np, fastjac
    >>> z = np.array([1.0, 2.0, 3.0])
    >>> a = 1 / (1 + np.exp(-z))
    >>> fastjac.check_jacobian(lambda z: 1 / (1 + np.exp(-z)), z, np.diag(a * (1 - a))).passed
    True
    >>> fastjac.check_jacobian(lambda z: 1 / (1 + np.exp(-z)), z, np.diag(a)).verdict
    'fail'
    """
    opts = _split_options(jacobian_options)
    method = f"{opts['method']}-{opts['order']}"
    if is_multi(x):
        flat, spec = pack(x)
        g = spec.wrap(f)
        in_label = _container_label(spec)
        exp_parts = ([expected[k] for k in spec.keys] if spec.kind == "dict" and isinstance(expected, dict)
                     else list(expected) if isinstance(expected, (tuple, list)) else None)
        if exp_parts is None or len(exp_parts) != len(spec.shapes):
            raise ValueError(f"`expected` must be a {spec.kind} with one Jacobian block per "
                             f"input ({list(spec.keys)}); got {describe(expected)}.")
        exp_parts = [_as_expected(p, f"expected[{k!r}]") for k, p in zip(spec.keys, exp_parts)]
        tol = _tol.tolerance_for(flat.dtype, *[p.dtype for p in exp_parts], rtol=rtol, atol=atol)
        dtype = _tol.tolerance_dtype(flat.dtype, *[p.dtype for p in exp_parts])
        fx, early, nfev0 = _guard_f(g, flat, "jacobian", method, tol, dtype)
        if early is not None:
            return early
        out_shape = fx.shape
        blocks, notes = [], []
        for k, p, shape in zip(spec.keys, exp_parts, spec.shapes):
            b, note = _match_shape(p, out_shape + shape, f"expected[{k!r}]")
            notes += [note] if note else []
            blocks.append(b.reshape(fx.size, -1))
        E = np.concatenate(blocks, axis=1).astype(np.float64)
        x_point = flat
    else:
        x_point = as_point(x)
        expected = _as_expected(expected, "expected")
        tol = _tol.tolerance_for(x_point.dtype, expected.dtype, rtol=rtol, atol=atol)
        dtype = _tol.tolerance_dtype(x_point.dtype, expected.dtype)
        g = f
        fx, early, nfev0 = _guard_f(g, x_point, "jacobian", method, tol, dtype)
        if early is not None:
            return early
        out_shape = fx.shape
        E, note = _match_shape(expected, out_shape + x_point.shape)
        notes = [note] if note else []
        E = E.reshape(fx.size, -1).astype(np.float64)
        in_label = _unravel(x_point.shape)
    dtype = _tol.tolerance_dtype(dtype, fx.dtype)
    tol = _tol.tolerance_for(dtype, rtol=rtol, atol=atol)
    if not np.all(np.isfinite(E)):
        return _nonfinite_report("jacobian", "`expected`", E.reshape(out_shape + (-1,) if not is_multi(x) else E.shape),
                                 method, nfev0, tol, dtype, notes)
    shape = out_shape + (x_point.shape if not is_multi(x) else (E.shape[1],))
    problem = _Problem(g=g, t0=x_point, expected=E, tol=lambda Q, Jn: _entry_tol(tol)(Q, Jn, E),
                       out_label=_unravel(out_shape), in_label=in_label, shape=shape)
    report = _run(problem, opts, tol, dtype, "jacobian", nfev0, notes)
    if is_multi(x):
        report.numeric = spec.split(report.numeric.reshape(out_shape + (-1,)), out_shape)
        report.expected = spec.split(report.expected.reshape(out_shape + (-1,)), out_shape)
        report.noise = spec.split(report.noise.reshape(out_shape + (-1,)), out_shape)
    return report


# ---------------------------------------------------------------------------
# check_grad
# ---------------------------------------------------------------------------
#: Bytes of perturbed copies of x that ``g`` builds per call of ``f``: the rows
#: of a batch are evaluated in groups this size, so a check of a large model
#: never materialises all its perturbed copies at once (64 MB at 1e5
#: parameters and 80 rows, each call page-faulting afresh).
_POINTS_CHUNK_BYTES = 2 << 20


def _reduced(f_flat, x_flat, x_shape, D):
    """``g(t) = f(x + t @ D)``, batched when ``t`` has a leading axis."""
    Dt = D.astype(x_flat.dtype)
    rows = max(1, _POINTS_CHUNK_BYTES // max(1, x_flat.size * x_flat.itemsize))

    def g(t):
        t = np.asarray(t)
        if t.ndim == 1 or t.shape[0] <= rows:
            X = x_flat + t @ Dt
            return f_flat(X.reshape(t.shape[:-1] + tuple(x_shape)))
        parts = [np.asarray(f_flat((x_flat + t[a:a + rows] @ Dt).reshape((-1,) + tuple(x_shape))))
                 for a in range(0, t.shape[0], rows)]
        return np.concatenate(parts, axis=0)
    g.__wrapped__ = f_flat
    g.x_shape = tuple(x_shape)
    return g


# Whether a user's f takes a batch, learned by the engine's probe on the
# first check and reused afterwards (each check builds a new ``g``).
_BATCHED = FunctionMemo()


def _user_function(fn):
    while hasattr(fn, "__wrapped__"):
        fn = fn.__wrapped__
    return fn


def check_grad(f, x, grad, *, mode="auto", seed=None, samples=6, directions=4, full_max=64,
               rtol=None, atol=None, **jacobian_options):
    """Check the gradient of a scalar loss, in full or by sampling.

    Parameters
    ----------
    f : callable
        Scalar loss ``f(x)`` (``f(*x)`` / ``f(**x)`` for containers).
    x : array_like or tuple/dict of array_like
        The point, e.g. ``(W, X, b)`` or ``{"W": W, "b": b}``.
    grad : array_like or tuple/dict of array_like
        The analytic gradient, shaped like ``x`` (size-1 axes may differ).
    mode : {'auto', 'full', 'sampled', 'directional', 'sampled+directional'}
        ``'auto'`` is ``'full'`` for at most ``full_max`` inputs and
        ``'sampled+directional'`` above.
    seed : int or numpy.random.Generator, optional
        Seeds a private ``numpy.random.default_rng``; the global numpy RNG
        is never used.
    samples, directions : int
        Coordinates sampled and random directions drawn.
    full_max : int
        Size threshold of ``'auto'``.
    rtol, atol, **jacobian_options :
        As in :func:`check_jacobian`.

    Returns
    -------
    JacobianCheck
        For sampled/directional modes ``numeric``/``expected`` hold the
        sampled partials followed by the directional derivatives, and the
        worst entries name the coordinate (with its key for containers) or
        the direction.

    Notes
    -----
    Probability model.  *Sampled*: ``s`` of ``n`` coordinates drawn without
    replacement find one wrong entry with probability ``s/n`` and miss it
    with ``1 - s/n``; they are there for dense errors (sign, factor 2,
    transpose), which any coordinate shows.

    *Directional*: with ``v ~ N(0, I)`` the directional error is
    ``e.v ~ N(0, |e|^2)`` for any error vector ``e = grad - true``, so
    ``P(|e.v| <= tau) <= sqrt(2/pi) tau / |e|`` (Gaussian anti-concentration);
    with ``k`` independent directions a miss has probability at most
    ``(0.8 tau / |e|)^k``.  The threshold ``tau`` for direction ``v`` is the
    per-entry tolerance propagated through ``v``:
    ``atol |v| + rtol |grad * v|`` (root-sum-square, since the per-entry
    errors enter with the random signs of ``v``) plus three times the
    estimated finite-difference noise.  So any error with
    ``|e| >> rtol |grad| + noise`` is caught with probability
    ``1 - (0.8 tau/|e|)^k``; an error tiny relative to the gradient's norm
    (one entry of a 1e5-vector off by 10%) is below ``tau`` and can pass,
    which the sampled coordinates then only catch with probability ``s/n``.

    Examples
    --------
    >>> import numpy as np, fastjac
    >>> x = np.linspace(-1, 1, 1000)
    >>> loss = lambda x: np.sum(np.log(np.cosh(x)))
    >>> fastjac.check_grad(loss, x, np.tanh(x), seed=0).passed
    True
    >>> fastjac.check_grad(loss, x, 2 * np.tanh(x), seed=0).verdict
    'fail'
    """
    if mode not in GRAD_MODES:
        raise ValueError(f"`mode` must be one of {list(GRAD_MODES)}; got {mode!r}.")
    for name, value in (("samples", samples), ("directions", directions), ("full_max", full_max)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"`{name}` must be an integer >= 0; got {value!r}.")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    opts = _split_options(jacobian_options)
    method = f"{opts['method']}-{opts['order']}"
    multi = is_multi(x)
    if multi:
        x_flat, spec = pack(x)
        f_flat = spec.wrap(f)
        try:
            g_flat, _ = pack_like(spec, grad, "grad")
        except ValueError:
            parts = [grad[k] for k in spec.keys] if spec.kind == "dict" else list(grad)
            fixed = []
            for k, p, shape in zip(spec.keys, parts, spec.shapes):
                fixed.append(_match_shape(_as_expected(p, f"grad[{k!r}]"), shape, f"grad[{k!r}]")[0])
            g_flat, _ = pack_like(spec, fixed if spec.kind == "tuple" else dict(zip(spec.keys, fixed)), "grad")
        grad_dtypes = [np.asarray(grad[k] if spec.kind == "dict" else p).dtype
                       for k, p in zip(spec.keys, grad if spec.kind == "tuple" else spec.keys)]
        x_shape = x_flat.shape
        in_label = _container_label(spec)
        shape_note = None
    else:
        x_flat = as_point(x)
        x_shape = x_flat.shape
        f_flat = f
        graw = _as_expected(grad, "grad")
        grad_dtypes = [graw.dtype]
        g_flat, shape_note = _match_shape(graw, x_shape, "grad")
        in_label = _unravel(x_shape)
    g_flat = np.asarray(g_flat, dtype=np.float64).reshape(-1)
    n = g_flat.size
    dtype = _tol.tolerance_dtype(x_flat.dtype, *grad_dtypes)
    tol = _tol.tolerance_for(dtype, rtol=rtol, atol=atol)
    if mode == "auto":
        mode = "full" if n <= full_max else "sampled+directional"
    fx, early, nfev0 = _guard_f(f_flat, x_flat.reshape(x_shape), f"grad/{mode}", method, tol, dtype)
    if early is not None:
        return early
    if fx.size != 1:
        raise ValueError(f"`f` must return a scalar loss for check_grad; f(x) has shape "
                         f"{fx.shape}. Use check_jacobian for vector-valued functions.")
    dtype = _tol.tolerance_dtype(dtype, fx.dtype)
    tol = _tol.tolerance_for(dtype, rtol=rtol, atol=atol)
    notes = [shape_note] if shape_note else []
    kind = f"grad/{mode}"
    if not np.all(np.isfinite(g_flat)):
        where, count = nonfinite_positions(g_flat)
        where = [in_label(w[0]) for w in where]
        return _nonfinite_report(kind, "`grad`", g_flat, method, nfev0, tol, dtype,
                                 [f"non-finite gradient entries at {where}"])
    if mode == "full":
        E = g_flat.reshape(1, n)
        problem = _Problem(g=f_flat, t0=x_flat.reshape(x_shape), expected=E,
                           tol=lambda Q, Jn: tol.atol + tol.rtol * np.abs(E),
                           out_label=lambda r: (), in_label=in_label, shape=x_shape if not multi else (n,))
        report = _run(problem, opts, tol, dtype, kind, nfev0, notes)
        if multi:
            report.numeric = spec.split(report.numeric.reshape(n), ())
            report.expected = spec.split(report.expected.reshape(n), ())
            report.noise = spec.split(report.noise.reshape(n), ())
        return report
    # Sampled coordinates (unit rows) and Gaussian directions in one stack.
    s = min(samples, n) if "sampled" in mode else 0
    k = directions if "directional" in mode else 0
    if s + k == 0:
        raise ValueError("`samples` and `directions` are both 0: nothing to check.")
    idx = np.sort(rng.choice(n, size=s, replace=False)) if s else np.empty(0, int)
    D = np.zeros((s + k, n))
    D[np.arange(s), idx] = 1.0
    if k:
        D[s:] = rng.standard_normal((k, n))
    xf = x_flat.reshape(-1)
    stencil = get_stencil(opts["method"], opts["order"])
    eps = eps_for(xf.dtype, fx.dtype)
    rel = relative_step(stencil, eps)
    dmax = np.max(np.abs(D), axis=1)
    # Each direction moves no element further than jacobian() would move it.
    scale = np.empty(s + k)
    scale[:s] = np.maximum(1.0, np.abs(xf[idx].astype(np.float64)))
    scale[s:] = max(1.0, float(np.max(np.abs(xf), initial=0.0)))
    if opts.get("step") is not None:
        notes.append("`step` is ignored by sampled/directional checks; steps follow each direction.")
    step = rel * scale / dmax
    E = (D @ g_flat).reshape(1, -1)
    tolv = np.empty(s + k)
    tolv[:s] = tol.atol + tol.rtol * np.abs(g_flat[idx])
    # Per-entry tolerances propagated through v (root-sum-square: random signs).
    tolv[s:] = tol.atol * np.linalg.norm(D[s:], axis=1) + tol.rtol * np.linalg.norm(D[s:] * g_flat, axis=1)
    opts = dict(opts, step=None)
    g = _reduced(f_flat, xf, x_shape, D)

    def in_lab(j):
        return in_label(int(idx[j])) if j < s else f"direction {j - s}"
    problem = _Problem(g=g, t0=np.zeros(s + k, dtype=xf.dtype), expected=E,
                       tol=lambda Q, Jn: tolv[None, :], out_label=lambda r: (), in_label=in_lab,
                       step=step, input_scale=scale, shape=(s + k,))
    notes.append(f"checked {s} sampled coordinate(s) of {n} and {k} random Gaussian direction(s) "
                 f"(seed={seed!r}); see check_grad's Notes for the miss probabilities.")
    return _run(problem, opts, tol, dtype, kind, nfev0, notes)


# ---------------------------------------------------------------------------
# check_vjp / check_jvp
# ---------------------------------------------------------------------------
def _directions_problem(f, x, directions, seed, opts):
    x_point = as_point(x)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    n = x_point.size
    V = rng.standard_normal((directions, n))
    xf = x_point.reshape(-1)
    stencil = get_stencil(opts["method"], opts["order"])
    return x_point, xf, V, stencil, rng


def _vjp_jvp(kind, f, x, fn, directions, seed, rtol, atol, jacobian_options):
    if isinstance(directions, bool) or not isinstance(directions, (int, np.integer)) or directions < 1:
        raise ValueError(f"`directions` must be an integer >= 1; got {directions!r}.")
    opts = _split_options(jacobian_options)
    method = f"{opts['method']}-{opts['order']}"
    x_point, xf, V, stencil, rng = _directions_problem(f, x, directions, seed, opts)
    dtype = _tol.tolerance_dtype(x_point.dtype)
    tol = _tol.tolerance_for(dtype, rtol=rtol, atol=atol)
    fx, early, nfev0 = _guard_f(f, x_point, kind, method, tol, dtype)
    if early is not None:
        return early
    out_shape, m = fx.shape, fx.size
    eps = eps_for(xf.dtype, fx.dtype)
    scale = np.full(directions, max(1.0, float(np.max(np.abs(xf), initial=0.0))))
    step = relative_step(stencil, eps) * scale / np.max(np.abs(V), axis=1)
    g = _reduced(f, xf, x_point.shape, V)
    t0 = np.zeros(directions, dtype=xf.dtype)
    notes = [f"{directions} random Gaussian direction(s) (seed={seed!r}); J was never formed."]
    if kind == "vjp":
        U = rng.standard_normal((directions, m))
        A = []
        for l in range(directions):
            out = np.asarray(fn(U[l].reshape(out_shape).astype(fx.dtype if fx.dtype.kind == "f" else float)))
            if out.shape != x_point.shape:
                if out.size == x_point.size and _squeezed(out.shape) == _squeezed(x_point.shape):
                    out = out.reshape(x_point.shape)
                else:
                    raise ValueError(f"`vjp_fn` must return an array shaped like x {x_point.shape}; "
                                     f"got {out.shape}.")
            A.append(out.reshape(-1).astype(np.float64))
        A = np.array(A)
        dtype = _tol.tolerance_dtype(dtype, fx.dtype, A.dtype if A.size else None)
        tol = _tol.tolerance_for(dtype, rtol=rtol, atol=atol)
        E = A @ V.T                                  # E[l, j] = vjp(u_l) . v_j
        norm_uv = np.outer(np.linalg.norm(U, axis=1), np.linalg.norm(V, axis=1))
        terms = np.sqrt((A ** 2) @ (V ** 2).T)       # |vjp(u_l) * v_j| (root-sum-square)

        def tolf(Q, Jn):
            num_terms = np.sqrt((U ** 2) @ (Jn ** 2))
            return tol.atol * norm_uv + tol.rtol * np.maximum(terms, num_terms)
        problem = _Problem(g=g, t0=t0, expected=E, tol=tolf, contract=U,
                           out_label=lambda r: f"cotangent {r}", in_label=lambda j: f"direction {j}",
                           step=step, input_scale=scale)
    else:
        cols = []
        for j in range(directions):
            out = np.asarray(fn(V[j].reshape(x_point.shape).astype(xf.dtype)))
            if out.shape != out_shape:
                if out.size == m and _squeezed(out.shape) == _squeezed(out_shape):
                    out = out.reshape(out_shape)
                else:
                    raise ValueError(f"`jvp_fn` must return an array shaped like f(x) {out_shape}; "
                                     f"got {out.shape}.")
            cols.append(out.reshape(-1).astype(np.float64))
        E = np.array(cols).T                          # (m, k)
        dtype = _tol.tolerance_dtype(dtype, fx.dtype, np.asarray(cols[0]).dtype)
        tol = _tol.tolerance_for(dtype, rtol=rtol, atol=atol)
        vnorm = np.linalg.norm(V, axis=1)[None, :]
        problem = _Problem(g=g, t0=t0, expected=E,
                           tol=lambda Q, Jn: tol.atol * vnorm + tol.rtol * np.abs(E),
                           out_label=_unravel(out_shape), in_label=lambda j: f"direction {j}",
                           step=step, input_scale=scale)
    if not np.all(np.isfinite(E)):
        return _nonfinite_report(kind, f"`{kind}_fn` output", E, method, nfev0, tol, dtype, notes)
    return _run(problem, dict(opts, step=None), tol, dtype, kind, nfev0, notes)


def check_vjp(f, x, vjp_fn, *, directions=4, seed=None, rtol=None, atol=None, **jacobian_options):
    """Check a vector-Jacobian product through ``<u, J v> = <vjp_fn(u), v>``.

    Parameters
    ----------
    f : callable
    x : array_like
    vjp_fn : callable
        ``vjp_fn(u)`` takes a cotangent shaped like ``f(x)`` and returns
        ``u^T J`` shaped like ``x``.
    directions : int
        ``k`` random cotangents and ``k`` random tangents; all ``k*k`` inner
        products are compared, from one batched stack of ``J v_j``.
    seed : int or Generator, optional
    rtol, atol, **jacobian_options :
        As in :func:`check_jacobian`.

    Notes
    -----
    ``J`` is never formed: ``J v_j`` comes from one batched finite-difference
    stack along the ``k`` directions.  The tolerance of ``<u, J v>`` is the
    per-entry tolerance propagated root-sum-square through ``u`` and ``v``;
    the directional anti-concentration bound of :func:`check_grad` applies.

    Examples
    --------
    >>> import numpy as np, fastjac
    >>> A = np.arange(6.0).reshape(2, 3)
    >>> fastjac.check_vjp(lambda x: A @ x, np.ones(3), lambda u: u @ A, seed=0).passed
    True
    """
    return _vjp_jvp("vjp", f, x, vjp_fn, directions, seed, rtol, atol, jacobian_options)


def check_jvp(f, x, jvp_fn, *, directions=4, seed=None, rtol=None, atol=None, **jacobian_options):
    """Check a Jacobian-vector product ``jvp_fn(v) = J v`` along random directions.

    ``jvp_fn(v)`` takes a tangent shaped like ``x`` and returns ``J v``
    shaped like ``f(x)``; each output entry of each direction is compared
    with the numeric ``J v`` from one batched stack.

    Examples
    --------
    >>> import numpy as np, fastjac
    >>> A = np.arange(6.0).reshape(2, 3)
    >>> fastjac.check_jvp(lambda x: A @ x, np.ones(3), lambda v: A @ v, seed=0).passed
    True
    """
    return _vjp_jvp("jvp", f, x, jvp_fn, directions, seed, rtol, atol, jacobian_options)


# ---------------------------------------------------------------------------
# assert_* and the notebook drop-in
# ---------------------------------------------------------------------------
def _assert(report):
    if not report.passed:
        # The headline first: pytest's short summary shows the first line.
        raise AssertionError(str(report))
    return report


def assert_jacobian(f, x, expected, **kwargs):
    """:func:`check_jacobian` that raises ``AssertionError`` (message: the report) on failure."""
    return _assert(check_jacobian(f, x, expected, **kwargs))


def assert_grad(f, x, grad, **kwargs):
    """:func:`check_grad` that raises ``AssertionError`` with the report on failure."""
    return _assert(check_grad(f, x, grad, **kwargs))


def assert_vjp(f, x, vjp_fn, **kwargs):
    """:func:`check_vjp` that raises ``AssertionError`` with the report on failure."""
    return _assert(check_vjp(f, x, vjp_fn, **kwargs))


def assert_jvp(f, x, jvp_fn, **kwargs):
    """:func:`check_jvp` that raises ``AssertionError`` with the report on failure."""
    return _assert(check_jvp(f, x, jvp_fn, **kwargs))


def numeric_jacobian_test(x, f, expected, epsilon=1e-4):
    """Drop-in for the notebook's ``numeric_jacobian_test``, with a verdict.

    Prints the analytic matrix, the numeric one and the error norm, as the
    notebook does, then the verdict; returns the :class:`JacobianCheck`.
    The numeric matrix is the 4th-order central estimate at the fixed step
    ``epsilon`` (the notebook's 2nd-order one comes free from the same
    evaluations and feeds the noise estimate).

    Examples
    --------
    >>> import numpy as np, fastjac
    >>> report = fastjac.numeric_jacobian_test(np.array([1.0, 2.0]), lambda x: x ** 2,
    ...                                        np.diag([2.0, 4.0]))  # doctest: +ELLIPSIS
    analytic:
    ...
    verdict: pass
    >>> report.passed
    True
    """
    report = check_jacobian(f, x, expected, method="central", order=4, step=epsilon)
    print("analytic:")
    print(np.asarray(expected))
    print()
    print("numeric:")
    print(np.asarray(report.numeric).reshape(np.shape(report.numeric)))
    print()
    print("error norm:", report.error_norm)
    print()
    print(f"verdict: {report.verdict}")
    if report.verdict != "pass":
        print(report)
    for note in report.notes:
        if "size-1 axes" in note:
            print(f"note: {note}")
    return report
