"""Derivative checks with a verdict you can trust: the public surface.

This module handles arguments; the work is in :mod:`fastjac._checking`:

1. the engine is prepared once (``f(x)``, the cached batching plan) and the
   tolerance read from the dtype table;
2. the numeric side is measured: every column of ``J`` (``mode='full'``), or
   sampled columns plus random directions (``'sampled+directional'``), in a
   few batched evaluations whose first batch also evaluates ``f(x)`` again
   (the determinism guard);
3. every entry outside ``atol + rtol |expected|`` gets a second opinion from
   nine fresh points at a quarter of the step, which tells finite-difference
   noise from a bug, and a kink, a jump or an ill-conditioned ``f`` from both;
4. a failing direction is localised to its culprit coordinates, and the
   pattern of the mismatch is diagnosed (a factor, a sign, a transpose...).

The rule for what a check takes: ``check_jacobian`` and ``check_grad`` take
the derivative's *value* at ``x`` (``check_grad`` also accepts a function,
called at ``x``), ``check_vjp``, ``check_jvp`` and ``check_backward`` take the
*function* that applies it.
"""
from __future__ import annotations

import math

import numpy as np

from ._checking import (GRAD_MODES, JACOBIAN_FULL_MAX, JACOBIAN_MODES, ROWS_MAX, as_expected,
                        call_like, check_mode, early, expected_matrix, fast_remember_check,
                        match_shape, nan_guard, nonfinite_note, reshape_report, retolerance,
                        run_check, setup,
                        unravel, validate_counts, vjp_check, warm_check, jvp_cols)
from ._inputs import parts_like
from ._validate import as_point, describe

__all__ = ["check_jacobian", "check_grad", "check_vjp", "check_jvp", "check_backward",
           "assert_jacobian", "assert_grad", "assert_vjp", "assert_jvp", "assert_backward",
           "numeric_jacobian_test", "GRAD_MODES", "JACOBIAN_MODES", "JACOBIAN_FULL_MAX"]

def _start(f, x, kind, samples, directions, seed, rtol, atol, opts, f0=None):
    """The prologue of the function-taking checks: ``(setup, early report or None)``."""
    validate_counts(samples, directions, 0, seed)
    st = setup(f, x, opts, kind=kind, rtol=rtol, atol=atol, seed=seed, f0=f0)
    return st, nan_guard(st)


def _options(method, order, step, vectorized, max_memory, executor, progress):
    return dict(method=method, order=order, step=step, vectorized=vectorized,
                max_memory=max_memory, executor=executor, progress=progress)


# ---------------------------------------------------------------------------
# check_jacobian / check_grad
# ---------------------------------------------------------------------------
def check_jacobian(f, x, expected, *, mode="auto", seed=0, samples=6, directions=4,
                   full_max=JACOBIAN_FULL_MAX, rtol=None, atol=None, method="central", order=None,
                   step=None, vectorized="auto", max_memory=None, executor=None, progress="auto"):
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
    mode : {'auto', 'full', 'directional', 'sampled', 'sampled+directional'}
        ``'auto'``: ``'full'`` (every column of J) up to ``full_max`` inputs,
        ``'sampled+directional'`` above: ``samples`` columns and
        ``directions`` random directions ``v``, with ``expected @ v`` compared
        with the numeric ``J v`` per output component.
    seed : int or numpy.random.Generator, optional
        Seed of the sampled columns and directions (default 0: reproducible;
        printed in the report).
    samples, directions : int
        Columns sampled and random directions drawn (non-full modes).
    full_max : int
        Size threshold of ``'auto'`` (:data:`JACOBIAN_FULL_MAX`).
    rtol, atol : float, optional
        Per-entry tolerance ``atol + rtol * |expected|``.  Default: the
        table in :mod:`fastjac.tolerances` for the least precise dtype of
        x, f(x) and expected, with ``atol`` taken relative to the scale of
        the derivatives when they are all small.  Never scaled with the
        output size.
    method, order, step, vectorized, max_memory, executor, progress :
        As in :func:`fastjac.jacobian`.  Without ``order``, the first pass
        takes the lowest order whose error model sits 100x below ``rtol``
        (central differences: order 2 in float64, order 4 in float32); flagged
        entries are re-measured at 6th order.

    Returns
    -------
    JacobianCheck
        ``report.passed``, ``report.verdict``, the compared values, error
        figures, diagnoses, and the worst entries with their indices,
        statuses and noise.

    Raises
    ------
    ValueError
        If ``expected`` and the numeric Jacobian differ in shape beyond
        size-1 axes (both shapes are named).

    Notes
    -----
    An entry outside the tolerance is re-estimated from nine points at a
    quarter of the step (6th order, with the 4th-order estimate bounding its
    truncation); it is *noise* if the re-estimate agrees with ``expected``,
    *non-differentiable* or *discontinuous* if the secant slopes show a kink
    or a jump at ``x`` and ``expected`` matches the one-sided slopes,
    *inconclusive* if the estimates do not settle (an ill-conditioned ``f``
    at this dtype), and a *bug* otherwise.

    Miss probabilities of the directional mode are those of
    :func:`check_grad`, per output component: an error row ``e_i`` of J is
    missed by ``k`` random directions with probability at most
    ``(tau / max_j |e_ij w_j| + 1/128)^k``, ``tau`` being the tolerance of
    ``(J v)_i``.
    False alarms: none in the mutation suite (docs/checks.md).

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
    check_mode(mode)
    validate_counts(samples, directions, full_max, seed)
    warm, f0, spent = warm_check(f, x, expected, "jacobian", mode, full_max, method, order, step,
                                 vectorized, max_memory, executor, rtol, atol)
    if warm is not None:
        return warm
    opts = _options(method, order, step, vectorized, max_memory, executor, progress)
    st = setup(f, x, opts, kind="jacobian", rtol=rtol, atol=atol,
               seed=None if mode == "full" else seed, f0=f0, spent=spent)
    notes = []
    E2, dtypes = expected_matrix(st.prep, expected, "expected", notes)
    retolerance(st, dtypes, rtol, atol)
    st.notes += notes
    early_report = nan_guard(st)
    if early_report is not None:
        return early_report
    if mode == "auto" and st.prep.n <= full_max:
        st.seed = None
    report = run_check(st, E2, mode=mode, seed=seed, samples=samples, directions=directions,
                  full_max=full_max, x=x, f=f, kind_full="jacobian", kind_dir="jacobian")
    if report.verdict == "pass" and report.kind == "jacobian" and step is None and \
            st.prep.spec is None:
        fast_remember_check(f, x, expected, st, np.shape(report.numeric), notes,
                            unravel(st.prep.out_shape), unravel(st.prep.x_shape), rtol, atol)
    return report


def check_grad(f, x, grad, *, mode="auto", seed=0, samples=6, directions=4, full_max=64,
               rtol=None, atol=None, method="central", order=None, step=None, vectorized="auto",
               max_memory=None, executor=None, progress="auto"):
    """Check the gradient of a scalar loss, in full or by sampling.

    Parameters
    ----------
    f : callable
        Scalar loss ``f(x)`` (``f(*x)`` / ``f(**x)`` for containers).
    x : array_like or tuple/dict of array_like
        The point, e.g. ``(W, X, b)`` or ``{"W": W, "b": b}``.
    grad : array_like, tuple/dict of array_like, or callable
        The analytic gradient, shaped like ``x`` (size-1 axes may differ),
        or a function returning it, called at ``x`` like ``f``.
    mode : {'auto', 'full', 'sampled', 'directional', 'sampled+directional'}
        ``'auto'`` is ``'full'`` for at most ``full_max`` inputs and
        ``'sampled+directional'`` above.
    seed : int or numpy.random.Generator, optional
        Seeds a private ``numpy.random.default_rng`` (default 0, so two runs
        draw the same directions; printed in the report).  The global numpy
        RNG is never used.
    samples, directions : int
        Coordinates sampled and random directions drawn.
    full_max : int
        Size threshold of ``'auto'``.
    rtol, atol, method, order, step, vectorized, max_memory, executor, progress :
        As in :func:`check_jacobian`.

    Returns
    -------
    JacobianCheck
        For sampled/directional modes ``numeric``/``expected`` hold the
        sampled partials followed by the directional derivatives; when a
        direction fails, its culprit coordinates are found by group testing
        and named like a full check's entries.

    Notes
    -----
    Probability model.  *Sampled*: ``s`` of ``n`` coordinates drawn without
    replacement find one wrong entry with probability ``s/n`` and miss it
    with ``1 - s/n``; they are there for dense errors (sign, factor 2,
    transpose), which any coordinate shows.

    *Directional*: direction ``v`` has entries ``v_j = w_j u_j``, with ``w_j``
    the coordinate's own step and ``u_j`` independent and uniform on 256
    levels in ``[-1, 1]`` (one random byte each: a Gaussian draw costs more
    than the loss for large ``x``).  For any error vector ``e = grad - true``,
    ``e . v`` is a sum of independent symmetric unimodal terms, whose density
    never exceeds that of its largest term, so
    ``P(|e . v| <= tau) <= tau / max_j |e_j w_j| + 1/128``; with ``k``
    directions a miss has probability at most that to the power ``k``.  The
    threshold ``tau`` is ``atol |v| + rtol |grad . v|`` plus the
    finite-difference noise.  So an error that dominates one coordinate's
    share of the directional derivative is caught; an error tiny relative to
    the gradient's norm (one entry of a 1e5-vector off by 1e-6) can pass,
    which the sampled coordinates then only catch with probability ``s/n``.

    *Localisation*: a failing direction's support is split in halves, each
    re-measured by one forward difference, until one coordinate remains:
    ``ceil(log2 n) + 2`` evaluations name a single wrong entry.

    Examples
    --------
    >>> import numpy as np, fastjac
    >>> x = np.linspace(-1, 1, 1000)
    >>> loss = lambda x: np.sum(np.log(np.cosh(x)))
    >>> fastjac.check_grad(loss, x, np.tanh(x)).passed
    True
    >>> fastjac.check_grad(loss, x, 2 * np.tanh(x)).verdict
    'fail'
    """
    check_mode(mode)
    validate_counts(samples, directions, full_max, seed)
    opts = _options(method, order, step, vectorized, max_memory, executor, progress)
    if callable(grad) and not isinstance(grad, np.ndarray):
        grad = call_like(grad, x)
    warm, f0, spent = warm_check(f, x, grad, "grad/full", mode, full_max, method, order, step,
                                 vectorized, max_memory, executor, rtol, atol)
    if warm is not None:
        return warm
    st = setup(f, x, opts, kind="grad", rtol=rtol, atol=atol, seed=seed, f0=f0, spent=spent)
    prep = st.prep
    if prep.m != 1:
        raise ValueError(f"`f` must return a scalar loss for check_grad; f(x) has shape "
                         f"{prep.out_shape}. Use check_jacobian for vector-valued functions.")
    notes, dtypes = [], []
    if prep.spec is None:
        g = as_expected(grad, "grad")
        g, note = match_shape(g, prep.x_shape, "grad")
        notes += [note] if note else []
        dtypes.append(g.dtype)
        g = g.reshape(1, prep.n)
    else:
        parts = []
        for k, p, shape in zip(prep.spec.keys, parts_like(prep.spec, grad, "grad"), prep.spec.shapes):
            b, note = match_shape(as_expected(p, f"grad[{k!r}]"), shape, f"grad[{k!r}]")
            notes += [note] if note else []
            dtypes.append(b.dtype)
            parts.append(b.reshape(-1))
        g = np.concatenate(parts).reshape(1, prep.n)
    retolerance(st, dtypes, rtol, atol)
    st.notes += notes
    early_report = nan_guard(st)
    if early_report is not None:
        return early_report
    if not math.isfinite(np.add.reduce(g, axis=None)) and not np.all(np.isfinite(g)):
        # (a sum first: no grad-sized mask unless the sum overflows or is NaN)
        return early(st, "nan", g.reshape(-1), nonfinite_note("`grad`", g.reshape(-1)))
    use_full = mode == "full" or (mode == "auto" and prep.n <= full_max)
    if use_full:
        st.seed = None
    report = run_check(st, g, mode=mode, seed=seed, samples=samples, directions=directions,
                  full_max=full_max, x=x, f=f, kind_full="grad/full", kind_dir="grad",
                  out_label=lambda r: ())
    if use_full and prep.spec is None:
        reshape_report(report, prep.x_shape)
        if report.verdict == "pass" and step is None:
            fast_remember_check(f, x, grad, st, prep.x_shape, notes, lambda r: (),
                                unravel(prep.x_shape), rtol, atol)
    return report


# ---------------------------------------------------------------------------
# check_vjp / check_jvp / check_backward
# ---------------------------------------------------------------------------


def check_vjp(f, x, vjp_fn, *, directions=4, samples=6, seed=0, rtol=None, atol=None,
              method="central", order=None, step=None, vectorized="auto", max_memory=None,
              executor=None, progress="auto"):
    """Check a vector-Jacobian product ``vjp_fn(u) = u^T J``.

    Parameters
    ----------
    f : callable
    x : array_like or tuple/dict of array_like
    vjp_fn : callable
        ``vjp_fn(u)`` takes a cotangent shaped like ``f(x)`` and returns
        ``u^T J`` shaped like ``x`` (a container like ``x`` for tuple/dict ``x``).
    directions, samples : int
        Random directions and sampled input coordinates of the numeric side.
    seed : int or Generator, optional
        Default 0 (reproducible; printed in the report).
    rtol, atol, method, order, step, vectorized, max_memory, executor, progress :
        As in :func:`check_jacobian`; ``step`` is honoured (each coordinate
        moves by at most its own step).

    Notes
    -----
    With at most :data:`ROWS_MAX` outputs, ``vjp_fn`` is called once per
    output (``u = e_i``) to give every row of the expected J, which is then
    checked entry by entry (in full up to :data:`JACOBIAN_FULL_MAX` inputs,
    else by sampled columns and directions, per output): the power of
    :func:`check_jacobian`, and ``J`` is never formed numerically beyond what
    that mode measures.  With more outputs, ``vjp_fn`` is called for a few
    sampled outputs (compared per output) and ``directions`` random
    cotangents ``u``, compared through ``<u, J v> = <vjp_fn(u), v>``.

    Examples
    --------
    >>> import numpy as np, fastjac
    >>> A = np.arange(6.0).reshape(2, 3)
    >>> fastjac.check_vjp(lambda x: A @ x, np.ones(3), lambda u: u @ A).passed
    True
    """
    st, early_report = _start(f, x, "vjp", samples, directions, seed, rtol, atol,
                              _options(method, order, step, vectorized, max_memory, executor,
                                       progress))
    if early_report is not None:
        return early_report
    return vjp_check(st, vjp_fn, directions=directions, seed=seed, samples=samples, x=x, f=f,
                      kind="vjp")


def check_jvp(f, x, jvp_fn, *, directions=4, samples=6, seed=0, rtol=None, atol=None,
              method="central", order=None, step=None, vectorized="auto", max_memory=None,
              executor=None, progress="auto"):
    """Check a Jacobian-vector product ``jvp_fn(v) = J v`` along random directions.

    ``jvp_fn(v)`` takes a tangent shaped like ``x`` (a container like ``x``
    for tuple/dict ``x``) and returns ``J v`` shaped like ``f(x)``.  With at
    most :data:`ROWS_MAX` inputs it is called once per input to give every
    column of the expected J (then checked as :func:`check_jacobian` does);
    above, along ``directions`` random directions and ``samples`` sampled
    columns, compared per output entry.  Options as in :func:`check_vjp`.

    Examples
    --------
    >>> import numpy as np, fastjac
    >>> A = np.arange(6.0).reshape(2, 3)
    >>> jvp = lambda v: A @ v
    >>> fastjac.check_jvp(lambda x: A @ x, np.ones(3), jvp).passed
    True
    >>> fastjac.check_jvp(lambda x: A @ x, np.ones(3), lambda v: 2 * jvp(v)).verdict
    'fail'
    """
    st, early_report = _start(f, x, "jvp", samples, directions, seed, rtol, atol,
                              _options(method, order, step, vectorized, max_memory, executor,
                                       progress))
    if early_report is not None:
        return early_report
    prep = st.prep
    if prep.n <= ROWS_MAX:
        E2 = jvp_cols(prep, jvp_fn, np.eye(prep.n))
        return run_check(st, E2, mode="auto", seed=seed, samples=samples, directions=directions,
                    full_max=JACOBIAN_FULL_MAX, x=x, f=f, kind_full="jvp", kind_dir="jvp")

    def cols(idx):
        V = np.zeros((len(idx), prep.n))
        V[np.arange(len(idx)), idx] = 1.0
        return jvp_cols(prep, jvp_fn, V)

    return run_check(st, None, mode="sampled+directional", seed=seed, samples=samples,
                directions=directions, full_max=0, x=x, f=f, kind_full="jvp", kind_dir="jvp",
                expected_of=lambda V: jvp_cols(prep, jvp_fn, np.asarray(V, np.float64)),
                expected_cols=cols)


def check_backward(forward, backward, *inputs, names=None, directions=4, samples=6, seed=0,
                   rtol=None, atol=None, method="central", order=None, step=None,
                   vectorized="auto", max_memory=None, executor=None, progress="auto"):
    """Check a hand-written layer's backward pass against its forward pass, every input at once.

    The convention of courses and hand-written numpy networks:

    - ``forward(*inputs)`` returns ``out``, or ``(out, cache)``;
    - ``backward(dout, cache)`` returns one gradient per input, in order
      (``backward(dout)`` when ``forward`` returns no cache).

    All inputs' gradients are checked through the VJP identity in one stream
    of batched evaluations of ``forward``, and the report names the wrong
    input (and, by localisation, the wrong entries).

    Parameters
    ----------
    forward, backward : callable
    *inputs : array_like
        The layer's inputs and parameters, e.g. ``X, W, b``.
    names : sequence of str, optional
        Names for the report (``x['W']`` instead of ``x[1]``).
    directions, samples, seed, rtol, atol, method, order, step, vectorized, max_memory, executor, progress :
        As in :func:`check_vjp`.

    Notes
    -----
    ``backward`` is called with the cache of the unperturbed forward pass,
    before any perturbed evaluation: a layer object that keeps its cache in
    ``self`` (numpy-ml style) sees its own forward pass last.  ``forward``
    must be deterministic: fix a dropout mask or an RNG inside it (the
    determinism guard says so when it is not).  See docs/checks.md for a
    recipe for layer objects with gradient dictionaries.

    Examples
    --------
    >>> import numpy as np, fastjac
    >>> def forward(X, W):
    ...     return X @ W, (X, W)
    >>> def backward(dout, cache):
    ...     X, W = cache
    ...     return dout @ W.T, X.T @ dout
    >>> rng = np.random.default_rng(0)
    >>> X, W = rng.normal(size=(4, 3)), rng.normal(size=(3, 2))
    >>> fastjac.check_backward(forward, backward, X, W, names=("X", "W")).passed
    True
    """
    if not inputs:
        raise ValueError("`inputs` must hold at least one array: check_backward(forward, "
                         "backward, X, W, ...).")
    if not callable(forward) or not callable(backward):
        raise TypeError(f"`forward` and `backward` must be callable; got {describe(forward)} "
                        f"and {describe(backward)}.")
    if names is not None:
        names = tuple(names)
        if len(names) != len(inputs) or len(set(names)) != len(names):
            raise ValueError(f"`names` must give one distinct name per input ({len(inputs)}); "
                             f"got {names!r}.")
    points = [as_point(v, f"inputs[{i}]") for i, v in enumerate(inputs)]
    first = forward(*[p.copy() for p in points])
    has_cache = isinstance(first, tuple) and len(first) == 2
    cache = first[1] if has_cache else None

    def out_of(result):
        return result[0] if has_cache and isinstance(result, tuple) else result

    def grads(dout):
        g = backward(dout, cache) if has_cache else backward(dout)
        if len(points) == 1 and not isinstance(g, (tuple, list)):
            g = (g,)
        if not isinstance(g, (tuple, list)) or len(g) != len(points):
            raise ValueError(f"`backward` must return one gradient per input ({len(points)}); "
                             f"got {describe(g)}.")
        return dict(zip(names, g)) if names else tuple(g)

    if names:
        x = dict(zip(names, points))

        def f(**kw):
            return out_of(forward(*[kw[k] for k in names]))
    else:
        x = tuple(points)

        def f(*xs):
            return out_of(forward(*xs))

    st, early_report = _start(f, x, "backward", samples, directions, seed, rtol, atol,
                              _options(method, order, step, vectorized, max_memory, executor,
                                       progress), f0=np.asarray(out_of(first)))
    if early_report is not None:
        return early_report
    return vjp_check(st, grads, directions=directions, seed=seed, samples=samples, x=x, f=f,
                      kind="backward")


# ---------------------------------------------------------------------------
# assert_* and the notebook drop-in
# ---------------------------------------------------------------------------
def _assert(report):
    __tracebackhide__ = True  # pytest shows the caller's line, not fastjac's frames
    if not report.passed:
        # The verdict and the diagnosis first: pytest's short summary shows the first line.
        raise AssertionError(str(report))
    return report


def assert_jacobian(f, x, expected, **kwargs):
    """:func:`check_jacobian` that raises ``AssertionError`` (message: the report) on failure."""
    __tracebackhide__ = True
    return _assert(check_jacobian(f, x, expected, **kwargs))


def assert_grad(f, x, grad, **kwargs):
    """:func:`check_grad` that raises ``AssertionError`` with the report on failure."""
    __tracebackhide__ = True
    return _assert(check_grad(f, x, grad, **kwargs))


def assert_vjp(f, x, vjp_fn, **kwargs):
    """:func:`check_vjp` that raises ``AssertionError`` with the report on failure."""
    __tracebackhide__ = True
    return _assert(check_vjp(f, x, vjp_fn, **kwargs))


def assert_jvp(f, x, jvp_fn, **kwargs):
    """:func:`check_jvp` that raises ``AssertionError`` with the report on failure."""
    __tracebackhide__ = True
    return _assert(check_jvp(f, x, jvp_fn, **kwargs))


def assert_backward(forward, backward, *inputs, **kwargs):
    """:func:`check_backward` that raises ``AssertionError`` with the report on failure."""
    __tracebackhide__ = True
    return _assert(check_backward(forward, backward, *inputs, **kwargs))


def numeric_jacobian_test(x, f, expected, epsilon=1e-4):
    """Drop-in for the notebook's ``numeric_jacobian_test``, with a verdict.

    Prints the analytic matrix, the numeric one and the error norm, as the
    notebook does, then the verdict; returns the :class:`JacobianCheck`.
    The numeric matrix is the 4th-order central estimate at the fixed step
    ``epsilon``.

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
    report = check_jacobian(f, x, expected, mode="full", method="central", order=4, step=epsilon)
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

