"""Building the problems the judge compares, through the engine's internal API.

:func:`setup` prepares the engine once per check (validation, ``f(x)``, the
cached plan, the tolerance table); :func:`full` measures every column of
``J`` (the plan's fast path when the problem is small and warm), and
:func:`directional` measures sampled columns and random directions.  Both
evaluate ``f(x)`` once more inside their first batch, as a determinism
guard, and hand back a :class:`~.problem.Problem`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from .. import tolerances as T
from .._engine import (coordinate_source, dense_jacobian, dense_source, fast_lookup,
                       fast_remember, prepare, run, stack_buffer)
from ..stencils import DEFAULT_ORDER, get_stencil
from .guards import deterministic
from .problem import Directions, Problem

__all__ = ["Setup", "setup", "full", "directional", "release", "random_directions", "FIRST_PASS_ORDER", "JACOBIAN_OPTIONS",
           "atol_cap", "first_pass_order"]

#: A first pass's error model must sit this far below the tolerance it serves.
FIRST_PASS_MARGIN = 100.0


def first_pass_order(method, dtype, rtol=None):
    """The lowest stencil order whose error model resolves the tolerance (see
    :func:`_first_pass_order`); cached, as every warm check asks."""
    try:
        return _cached_order(method, np.dtype(dtype), rtol)
    except TypeError:  # an unhashable rtol: computed (and validated) uncached
        return _first_pass_order(method, dtype, rtol)


@lru_cache(maxsize=256)
def _cached_order(method, dtype, rtol):
    return _first_pass_order(method, dtype, rtol)


def _first_pass_order(method, dtype, rtol=None):
    """The lowest stencil order whose error model resolves the tolerance.

    A stencil of order ``p`` at its balanced step has a relative error of about
    ``EPS**(p/(p+1))``; the first pass takes the lowest order for which that
    is ``FIRST_PASS_MARGIN`` times below ``rtol`` (the table's for ``dtype``
    unless given): central differences of order 2 in float64 (3.7e-11 against
    1e-6), of order 4 in float32 (3e-6 against 1e-3; order 2 would give 2.4e-5
    and, measured on the mutation suite, lose 39 of 320 1% scale errors and 2
    zeroed rows), order 2 for one-sided ones.  Flagged entries are re-measured
    at 6th order by the second opinions, so a 4th-order first pass everywhere
    would double the evaluations of every check for nothing (docs/checks.md).
    """
    from ..stencils import STENCILS
    from ..steps import eps_for

    get_stencil(method)  # the table's error for an unknown method
    orders = sorted(o for m, o in STENCILS if m == method)
    if method == "complex":
        return orders[0]
    eps = eps_for(dtype)
    rtol = T.tolerance_for(dtype).rtol if rtol is None else rtol
    for p in orders:
        if eps ** (p / (p + 1)) * FIRST_PASS_MARGIN <= rtol:
            return p
    return orders[-1]


#: The first pass's order for float64 inputs, per method (see first_pass_order).
FIRST_PASS_ORDER = {m: first_pass_order(m, np.float64) for m in DEFAULT_ORDER}

JACOBIAN_OPTIONS = ("method", "order", "step", "vectorized", "max_memory", "executor", "progress")


@dataclass
class Setup:
    """One check's prepared engine and tolerance."""

    prep: object
    method: str
    order: int
    tol: T.Tolerance
    dtype: str
    step: object
    user_atol: bool
    kind: str
    seed: object = None
    notes: list = field(default_factory=list)
    t_start: float = 0.0
    fast: bool = False

    @property
    def method_name(self) -> str:
        return f"{self.method}-{self.order}"


def _input_dtype(x):
    """The working dtype of ``x`` (or of its least precise part), without copying it."""
    from .._inputs import is_multi
    from .._validate import working_dtype

    parts = (x.values() if isinstance(x, dict) else x) if is_multi(x) else [x]
    try:
        return T.tolerance_dtype(*[working_dtype(np.asarray(p).dtype) for p in parts])
    except TypeError:
        return "float64"  # not numbers: prepare says so, naming x


def setup(f, x, options, *, kind, dtypes=(), rtol=None, atol=None, seed=None, f0=None,
          spent=0):
    """Validate the options, prepare the engine and pick the tolerance.

    ``f0`` is ``f(x)`` when the caller has it; ``spent`` counts points the
    caller already evaluated (they belong in ``nfev``)."""
    t_start = time.perf_counter()
    method = options.get("method", "central")
    order = options.get("order")
    T.tolerance_for(np.float64, rtol=rtol, atol=atol)  # validates both, naming them
    chosen = order is None
    if chosen:
        order = first_pass_order(method, _input_dtype(x), rtol)
    opts = dict(method=method, vectorized=options.get("vectorized", "auto"),
                max_memory=options.get("max_memory"), executor=options.get("executor"),
                progress=options.get("progress", "auto"))
    prep = prepare(f, x, order=order, f0=f0, **opts)
    if chosen and prep.fx.dtype.kind == "f":
        lower = first_pass_order(method, T.tolerance_dtype(prep.x0.dtype, prep.fx.dtype), rtol)
        if lower != order:  # f computes in a lower precision than x: its own order
            order = lower
            prep = prepare(f, x, order=order, f0=prep.fx, **opts)
    prep.nfev += spent
    if prep.fx.dtype.kind not in "biuf":
        raise TypeError(f"`f` must return real numbers; got dtype {prep.fx.dtype}.")
    dtype = T.tolerance_dtype(prep.x0.dtype, prep.fx.dtype, *dtypes)
    tol = T.tolerance_for(dtype, rtol=rtol, atol=atol)
    return Setup(prep, method, order, tol, dtype, options.get("step"), atol is not None, kind,
                 seed, [], t_start)


def atol_cap(st):
    """The table's atol never exceeds ``rtol`` times the largest derivative."""
    return st.tol.rtol


def _scale_aware_atol(st, E2, numeric):
    """The table's ``atol``, capped at ``rtol`` times the largest derivative: a
    Jacobian whose entries are all ~1e-18 is compared at its own scale, not
    passed wholesale because every entry lies below 1e-9.  A user's ``atol``
    is used as given."""
    atol = st.tol.atol
    if st.user_atol:
        return atol
    scale = max(float(np.max(np.abs(E2), initial=0.0)), float(np.max(np.abs(numeric), initial=0.0)))
    if scale == 0.0:
        st.notes.append("every expected and numeric value is exactly 0: the check compared zeros.")
        return atol
    cap = atol_cap(st) * scale
    if cap < atol:
        st.notes.append(f"the derivatives are all small (largest {scale:.3g}), so atol is "
                        f"rtol x that, {cap:.3g}, instead of {atol:g}: below the table's atol "
                        "they would pass whatever their value.")
        return cap
    return atol


def full(st: Setup, E2, *, out_label, in_label, shape, f=None, x=None):
    """Every column of ``J`` against ``E2`` (shape ``(m, n)``, the caller's array)."""
    prep = st.prep
    fast = None
    if st.step is None and prep.executor is None and prep.max_memory is None and x is not None:
        fast = fast_lookup(f, x, st.method, st.order, prep.vectorized, center=True)
    got = fast(x, f) if fast is not None else None
    if got is not None:
        JT, center, h = got
        prep.nfev += JT.shape[0] * prep.stencil.evaluations_per_column + 1
        prep.ncalls += 1
        batched, st.fast = True, True
    else:
        h = prep.steps(st.step)
        JT, stats = dense_jacobian(prep, h, center=True) if prep.n and prep.m else (
            [np.zeros((prep.n, prep.m), prep.dtype)], None)
        JT = JT[0]
        center = None if stats is None else stats.center
        batched = prep.batched
        if st.step is None and stats is not None and x is not None:
            fast_remember(prep, st.method, st.order, center=True, stats=stats)
    numeric = JT.T  # (m, n), a view
    directions = Directions(step=np.asarray(h, dtype=np.float64),
                            index=np.arange(prep.n), scale=np.maximum(1.0, np.abs(prep.x0)))
    atol = _scale_aware_atol(st, E2, numeric)
    problem = Problem(prep, numeric, E2, atol, st.tol.rtol, directions, out_label, in_label,
                      shape=shape)
    return problem, center, batched


#: Directions up to this many bytes live in a per-thread buffer reused from
#: check to check: glibc returns allocations of 32 MiB and more to the OS on
#: free, so a fresh (4, 1M) float64 V page-faulted in (~25 ms on a VM, 15 loss
#: evaluations of a 1M-parameter layer) on every check.  The problem drops its
#: reference when the check is done (:func:`release`).
POOLED_DIRECTION_BYTES = 256 << 20


def random_directions(rng, count, w, dtype, pooled=False):
    """``count`` random directions, scaled per coordinate by the step ``w``.

    Coordinate ``j`` of a direction is ``w_j u_j`` with ``u_j`` uniform on 256
    levels in ``[-1, 1]``, from one random byte: no element moves further than
    :func:`fastjac.jacobian` would move it (a step scaled by the largest ``|x|``
    would cross more kinks), and drawing them costs a fraction of one pass over
    ``x`` where Gaussian ones cost several (for a loss of one pass over its
    parameters, the draws were the largest cost of a check).  ``pooled``: in
    the thread's reused buffer (see :data:`POOLED_DIRECTION_BYTES`).
    """
    n = w.size
    words = -(-(count * n) // 8)
    B = rng.bit_generator.random_raw(words).view(np.uint8)[:count * n].reshape(count, n)
    nbytes = count * n * dtype.itemsize
    if pooled and nbytes <= POOLED_DIRECTION_BYTES:
        V = stack_buffer(nbytes, dtype, "check-directions").reshape(count, n)
    else:
        V = np.empty((count, n), dtype=dtype)
    np.copyto(V, B, casting="unsafe")  # the plain cast loop: 4x faster than a mixed ufunc
    # In place, with the scale folded into one multiplication: each pass over
    # V (and each V-sized temporary, whose pages are faulted in fresh) costs
    # about one evaluation of a loss that makes one pass over x.
    V -= dtype.type(127.5)
    scale = stack_buffer(n * dtype.itemsize, dtype, "check-scale") if pooled else np.empty(n, dtype)
    np.multiply(w, dtype.type(1 / 127.5), out=scale, casting="same_kind")
    V *= scale
    return V


def release(problem):
    """Drop the problem's pooled directions: the check is done, and the
    thread's next check reuses the buffer."""
    problem.directions.V = None


def directional(st: Setup, *, expected_cols, expected_of, samples, count, rng, contract=None,
                out_label, in_label, shape=None):
    """Sampled columns and random directions of ``J`` (contracted with ``contract``).

    ``expected_cols(idx)`` gives the expected ``(R, s)`` for coordinate columns,
    ``expected_of(V)`` the expected ``(R, k)`` along dense directions ``V``
    (:func:`random_directions`, steps included: column ``s + l`` is
    ``J V[l]``).
    """
    prep = st.prep
    n, m = prep.n, prep.m
    # Per-coordinate steps, in scratch (only w[idx] outlives this function).
    w = prep.steps(st.step, out=stack_buffer(n * prep.x0.itemsize, prep.x0.dtype, "check-steps"))
    s = min(samples, n)
    idx = np.sort(rng.choice(n, size=s, replace=False)) if s else np.empty(0, np.int64)
    V = random_directions(rng, count, w, np.dtype(prep.x0.dtype), pooled=True)
    R = m if contract is None else contract.shape[0]
    Q = np.zeros((R, s + count))
    center = None

    def scatter_cols(block, D):
        lo = int(block.cols[0])
        vals = D[0] * (1.0 / w[block.indices])[:, None]      # (b, m)
        Q[:, lo:lo + block.size] = (vals if contract is None else vals @ contract.T).T

    def scatter_dirs(block, D):
        lo = int(block.cols[0])
        vals = D[0]                                          # the step is in V
        Q[:, s + lo:s + lo + block.size] = (vals if contract is None else vals @ contract.T).T

    if n and m:
        if s:
            stats = run(prep, coordinate_source(w, idx), scatter_cols, count=s, center=True)
            center = stats.center
        if count:
            stats = run(prep, dense_source(V), scatter_dirs, count=count, center=center is None)
            center = stats.center if center is None else center
    E = np.zeros((R, s + count))
    if s:
        E[:, :s] = expected_cols(idx)
    if count:
        E[:, s:] = expected_of(V)
    step = np.concatenate([w[idx], np.ones(count)])
    # Rounding the perturbed point moves f by EPS |x| / (the element's step) of
    # its slope: at most EPS max|x| / min over the moved elements.
    x0 = prep.x0
    xmax = max(1.0, abs(float(x0.max())), abs(float(x0.min()))) if n else 1.0
    scale = np.concatenate([np.maximum(1.0, np.abs(x0[idx].astype(np.float64))),
                            np.full(count, xmax)])
    directions = Directions(step=step, index=idx, V=V, scale=scale)
    # Tolerance of a directional derivative: atol propagated through v
    # (root-sum-square), rtol against the size of the derivative itself.
    norms = np.sqrt(np.einsum("ij,ij->i", V, V, dtype=np.float64)) if count else np.empty(0)
    col_atol = np.concatenate([np.ones(s), norms])
    rel_scale = np.maximum(np.abs(E), np.abs(Q))
    rel_scale[:, :s] = np.abs(E[:, :s])
    atol = _scale_aware_atol(st, E / col_atol, Q / col_atol)
    problem = Problem(prep, Q, E, atol, st.tol.rtol, directions, out_label, in_label,
                      contract=contract, col_atol=atol * col_atol, rel_scale=rel_scale,
                      shape=shape)
    return problem, center, prep.batched


def determinism_failure(st, center, batched):
    """A sentence when ``f`` disagrees with itself at ``x``, else None."""
    if center is None:
        return None
    ok, diff = deterministic(st.prep.fx, center, st.prep.eps, batched)
    if ok:
        return None
    return (f"two evaluations of f at the same x disagree by up to {diff:.3g}: f is not "
            "deterministic (dropout, sampling, an unseeded RNG, or state kept between calls), "
            "so finite differences of it mean nothing. Fix the randomness (seed it inside f) "
            "and check again.")
