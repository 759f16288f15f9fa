"""Public entry points: ``jacobian``, ``gradient``, ``jvp`` and the notebook drop-in.

Each is a thin layer over the engine's internal API (:mod:`fastjac._engine`):
:func:`~fastjac._engine.prepare` validates ``x`` into a private float copy,
evaluates ``f(x)`` and finds the cached plan (how ``f`` batches, learned on
the first call); :func:`~fastjac._engine.run` evaluates the blocks of
directions and scatters their stencil combinations into ``J``, laid out so
that ``J.shape == f(x).shape + x.shape``.
"""
from __future__ import annotations

import time

import numpy as np

from ._engine import (DEFAULT_CHUNK_BYTES, DenseDirections, JacobianInfo, check_callable,
                      check_step, dense_jacobian, fast_lookup, fast_remember, make_info, prepare,
                      run)
from ._inputs import is_multi, pack_like
from ._validate import as_point
from .stencils import get_stencil
from .steps import relative_step
from .tolerances import tolerance_for

__all__ = ["jacobian", "gradient", "jvp", "numeric_jacobian", "jacobian_with_info",
           "jvp_with_info", "JacobianInfo", "DEFAULT_CHUNK_BYTES", "NonAnalyticError"]


class NonAnalyticError(ValueError):
    """The complex step disagrees with a real difference: ``f`` is not analytic as written."""


def _split_step(step, spec):
    if step is not None and spec is not None and is_multi(step):
        return pack_like(spec, step, "step")[0]
    return step


def jacobian_with_info(f, x, *, method="central", order=None, step=None, vectorized="auto",
                       max_memory=None, executor=None, progress="auto", combos=None,
                       sparsity=None, output="dense", f0=None):
    """Like :func:`jacobian`, and also return a :class:`JacobianInfo`.

    ``combos`` is an optional list of weight vectors over the stencil's
    offsets; each yields one more estimate of J from the *same* evaluations
    (the checks use it for free noise estimates).  The first estimate is
    always the stencil's own.  ``f0`` is ``f(x)`` if the caller already has
    it (as scipy's ``approx_derivative(f0=...)``): ``f`` is then not called
    at ``x``.  For tuple/dict ``x``, J, ``info.step`` and ``info.extra`` come
    back in the same container (``output='sparse'``: one CSR column block per
    input).
    """
    t_start = time.perf_counter()
    if sparsity is not None or output != "dense":
        from .structure import structured_jacobian

        return structured_jacobian(f, x, method=method, order=order, step=step,
                                   vectorized=vectorized, max_memory=max_memory,
                                   executor=executor, progress=progress, combos=combos,
                                   sparsity=sparsity, output=output, f0=f0)
    prep = prepare(f, x, method=method, order=order, vectorized=vectorized,
                   max_memory=max_memory, executor=executor, progress=progress, f0=f0)
    h = prep.steps(_split_step(step, prep.spec))
    estimates = [prep.stencil.weights] + list(combos or [])
    if prep.n == 0 or prep.m == 0:
        JT = [np.empty((prep.n, prep.m), dtype=prep.dtype) for _ in estimates]
        stats = None
    else:
        JT, stats = dense_jacobian(prep, h, estimates)
        if step is None and not combos:
            fast_remember(prep, method, order, stats=stats)
    # J is stored transposed, (n, m), so each block writes contiguous rows;
    # the transpose below is a view, so there is no extra pass over J.
    out_shape, x_shape = prep.out_shape, prep.x_shape
    Js = [jt.T.reshape(out_shape + x_shape) for jt in JT]
    if prep.stencil.complex_step and stats is not None:
        _check_analytic(prep, JT[0])
    info = make_info(prep, h.reshape(x_shape), stats, t_start)
    if stats is None:
        info.strategy = "empty"
    if stats is not None:
        # J, plus per chunk the stack, f's output and the combined differences.
        S = prep.stencil.evaluations_per_column
        info.peak_bytes = sum(j.nbytes for j in JT) + stats.block_size * (
            S * prep.n + (2 * S + len(estimates)) * prep.m) * prep.dtype.itemsize
    info.extra = Js[1:]
    if prep.spec is not None:
        spec = prep.spec
        info.step = spec.split(info.step, ())
        info.extra = [spec.split(E, out_shape) for E in info.extra]
        return spec.split(Js[0], out_shape), info
    return Js[0], info


def _check_analytic(prep, JT):
    """Compare the complex-step ``J v`` with a real 4th-order difference along one
    random direction (4 evaluations): code that is not analytic as written
    (``abs``, ``max``, ``real``, many special functions) gives the complex step a
    wrong derivative without any error."""
    rng = np.random.default_rng(0)
    v = rng.standard_normal(prep.n)
    x0 = prep.x0.astype(np.float64)
    t = relative_step(get_stencil("central", 4), prep.eps) * max(1.0, float(np.max(np.abs(x0)))) / \
        float(np.max(np.abs(v)))
    d = ((x0 + t * v).astype(prep.x0.dtype) - prep.x0).astype(np.float64)
    offsets = (-2, -1, 1, 2)
    F = _real_values(prep, d, offsets)
    fd4 = (F[0] - 8 * F[1] + 8 * F[2] - F[3]) / 12.0
    fd2 = (F[2] - F[1]) / 2.0
    cv = JT.T.astype(np.float64) @ d
    fscale = max(float(np.max(np.abs(prep.fx), initial=0.0)), 1e-300)
    tol = tolerance_for(prep.dtype)
    allowed = (tol.rtol * np.maximum(np.abs(cv), np.abs(fd4)) + 10 * np.abs(fd4 - fd2)
               + 100 * prep.eps * fscale)
    bad = np.abs(cv - fd4) > allowed
    if np.any(bad):
        i = int(np.argmax(np.abs(cv - fd4) - allowed))
        raise NonAnalyticError(
            "`method='complex'` needs f to be analytic as written, and it is not: along a "
            f"random direction the complex step gives {cv[i]:.6g} but a real central "
            f"difference gives {fd4[i]:.6g} (output {i}). abs, max/min, comparisons, .real, "
            "var/std and many special functions are not analytic in the complex plane. "
            "Use method='central'.")


def _real_values(prep, d, offsets):
    """``f(x0 + c d)`` for real offsets, with a real stencil on the same plan's f."""
    from ._engine import values as raw_values

    real = prepare(prep.f, _unflat(prep, prep.x0), method="central", order=2,
                   vectorized=prep.vectorized if prep.vectorized != "auto" else "auto",
                   f0=prep.fx)
    F = raw_values(real, DenseDirections(d[None, :].astype(prep.x0.dtype), np.arange(1)), offsets)
    prep.nfev += real.nfev
    prep.ncalls += real.ncalls
    return F[:, 0, :].astype(np.float64)


def _unflat(prep, flat):
    if prep.spec is None:
        return flat.reshape(prep.x_shape)
    return prep.spec.unpack(flat)


def jacobian(f, x, *, method="central", order=None, step=None, vectorized="auto",
             max_memory=None, executor=None, progress="auto", sparsity=None, output="dense"):
    """Numeric Jacobian of ``f`` at ``x`` from batched finite differences.

    Parameters
    ----------
    f : callable
        ``f(x)`` returns a scalar or an array of any shape.  ``f`` receives
        read-only arrays (an ``f`` that rejects them, such as a Cython
        memoryview, gets verified writable copies).
    x : array_like, or tuple/dict of array_like
        The point: a scalar, nested list or array of any shape.  Never
        modified.  Integers and booleans are computed in float64; float32
        stays float32.  A tuple/dict is several inputs: ``f(*x)`` / ``f(**x)``,
        and J comes back in the same container, one block per input.
    method : {'central', 'forward', 'backward', 'complex'}, optional
        The stencil family (see ``fastjac.stencils.STENCILS``).  ``'complex'``
        is the complex step ``Im f(x + ih) / h``, exact to rounding for
        functions that are analytic and written to accept complex input; it
        is verified against a real difference along one random direction
        (4 more evaluations) and raises :class:`NonAnalyticError` otherwise.
    order : int, optional
        Truncation order: 2, 4 or 6 for central; 1 or 2 for one-sided.
        Default: the method's natural order (2 for central and complex,
        1 for forward and backward).
    step : float or array_like, optional
        Absolute step, a scalar or one per element of ``x``.  Default:
        ``EPS**(1/(p+1)) * max(1, |x_j|)`` for a stencil of order ``p``, with
        EPS from the less precise of x and f(x).
    vectorized : {'auto', True, False, 'leading', 'trailing'}, optional
        Whether ``f`` takes a batch of points.  ``True`` (or ``'leading'``):
        ``f`` maps ``(k, *x.shape)`` to ``(k, *f(x).shape)``.  ``'trailing'``:
        ``f`` maps ``(*x.shape, k)`` to ``(*f(x).shape, k)``, the points being
        extra columns (column-major code such as the notebook's, which
        reduces over axis 0).  ``'auto'`` probes both layouts once, verifies a
        few points against single calls and remembers the answer per
        function; otherwise ``f`` is called once per point, and
        ``JacobianInfo.fallback`` says why.
    max_memory : int, optional
        Upper bound in bytes of any one chunk (stack plus f's output).
    executor : concurrent.futures.Executor, optional
        Evaluate chunks as independent tasks: a ``ThreadPoolExecutor``, a
        ``ProcessPoolExecutor``, or a ``dask.distributed.Client`` (or
        ``client.get_executor()``).  Results are bitwise those of the
        in-process run.  Process and cluster executors need a picklable
        ``f`` (dask uses cloudpickle, so lambdas work there).  See
        ``docs/scale.md`` for Numba ``parallel=True`` safety.
    progress : {'auto', True, False}, optional
        Show a tqdm bar over chunks; ``'auto'`` only for runs longer than
        about two seconds on a terminal.
    sparsity : {'diagonal'}, array_like of bool, scipy.sparse matrix or BatchIndependent, optional
        Known pattern of J: a boolean array shaped like J or ``(m, n)``
        (``m = f(x).size``, ``n = x.size``), ``'diagonal'`` for an
        elementwise ``f``, or ``fastjac.batch_independent(axis=...)`` for a
        map applied sample by sample.  Columns sharing no nonzero row are
        perturbed together (greedy coloring), so the cost scales with the
        number of colors instead of ``n``; entries outside the pattern are
        zero.  For tuple/dict ``x``: one pattern per input, or one ``(m, N)``.
    output : {'dense', 'sparse', 'diagonal'}, optional
        Format of J: a dense ndarray (default); a ``scipy.sparse.csr_array``
        of shape ``(m, n)`` holding the pattern's entries; or, for a
        diagonal pattern, the diagonal shaped like ``x``.

    Returns
    -------
    J : ndarray, shape ``np.shape(f(x)) + np.shape(x)``
        Or as chosen by ``output``.

    Raises
    ------
    ValueError
        Unknown method/order, non-finite x, a shape that changes between points.
    TypeError
        Non-numeric x or output of f.
    MemoryError
        Before allocating, if J cannot fit in memory (the message names
        ``output='sparse'``, ``jvp`` and ``sampled_jacobian``).

    Notes
    -----
    Error model for a stencil of order ``p`` and step ``h``: truncation
    ``C_t |f^(p+1)| h**p`` plus round-off ``C_r EPS |f| / h``; the default step
    balances them.  For 2nd-order central differences in float64 that is
    about 1e-10 to 1e-11 relative; 4th order about 1e-13; the complex step
    reaches rounding (1e-16).

    Cost: ``f(x)`` plus ``S * n`` points (``S`` = 2 for central order 2) in
    as few batched calls as the memory budget allows.  The first call for a
    function and layout also probes how ``f`` batches (a batch and three
    single calls); later calls reuse that plan.

    Examples
    --------
    >>> import numpy as np
    >>> import fastjac
    >>> J = fastjac.jacobian(np.sin, np.array([0.0, 1.0]))
    >>> np.allclose(J, np.diag(np.cos([0.0, 1.0])))
    True

    An elementwise function needs two perturbed points whatever its size:

    >>> d = fastjac.jacobian(np.sin, np.linspace(0, 1, 10**5),
    ...                      sparsity="diagonal", output="diagonal")
    >>> d.shape
    (100000,)
    """
    if step is None and max_memory is None and executor is None and sparsity is None \
            and output == "dense":
        J = _warm(f, x, method, order, vectorized)
        if J is not None:
            return J
    J, _ = jacobian_with_info(f, x, method=method, order=order, step=step,
                              vectorized=vectorized, max_memory=max_memory,
                              executor=executor, progress=progress, sparsity=sparsity,
                              output=output)
    return J


def _warm(f, x, method, order, vectorized):
    """J from the plan's fast path (one call of f), or None."""
    fast = fast_lookup(f, x, method, order, vectorized)
    if fast is not None:
        got = fast(x, f)
        if got is not None:
            return got[0].T.reshape(fast.out_shape + fast.x_shape)
    return None


def gradient(f, x, *, method="central", order=None, step=None, vectorized="auto",
             max_memory=None, executor=None, progress="auto", sparsity=None, output="dense"):
    """Gradient of a scalar-valued ``f``, shaped like ``x``.

    Takes the same keyword options as :func:`jacobian`.

    Examples
    --------
    >>> import numpy as np, fastjac
    >>> g = fastjac.gradient(lambda v: np.sum(v ** 2), np.array([1.0, -2.0]))
    >>> np.allclose(g, [2.0, -4.0])
    True
    """
    if step is None and max_memory is None and executor is None and sparsity is None \
            and output == "dense":
        J = _warm(f, x, method, order, vectorized)
        if J is not None and J.size == np.size(x):
            return J.reshape(np.shape(x))
    J, info = jacobian_with_info(f, x, method=method, order=order, step=step,
                                 vectorized=vectorized, max_memory=max_memory, executor=executor,
                                 progress=progress, sparsity=sparsity, output=output)
    if info.fx.size != 1:
        raise ValueError(
            f"`f` must return a scalar for gradient(); f(x) has shape {info.fx.shape}. "
            "Use fastjac.jacobian for vector-valued functions.")
    lead = info.fx.ndim  # drop f's size-1 axes: the gradient is shaped like x

    def squeeze(a):
        return a.reshape(a.shape[lead:]) if isinstance(a, np.ndarray) else a

    if isinstance(J, tuple):
        return tuple(squeeze(a) for a in J)
    if isinstance(J, dict):
        return {k: squeeze(a) for k, a in J.items()}
    return squeeze(J)


def jvp(f, x, v, *, method="central", order=None, step=None, vectorized="auto",
        max_memory=None, executor=None, progress="auto"):
    """Directional derivative ``J(x) @ v`` from 2 evaluations (central).

    Parameters
    ----------
    f : callable
    x : array_like, or tuple/dict of array_like
    v : array_like, shape x.shape or (k, *x.shape)
        One tangent, or ``k`` tangents evaluated in one batched stack (for a
        tuple/dict ``x``, the same container, optionally with a leading ``k``
        axis on every part).
    method, order, vectorized, max_memory, executor, progress :
        As in :func:`jacobian`.
    step : float, optional
        Step along each direction (in units of ``v``).  Default
        ``EPS**(1/(p+1)) * max(1, max|x|) / max|v|``, so that no element moves
        further than :func:`jacobian` would move it.

    Returns
    -------
    Jv : ndarray, shape f(x).shape, or (k, *f(x).shape)

    Examples
    --------
    >>> import numpy as np, fastjac
    >>> x = np.array([1.0, 2.0])
    >>> float(np.round(fastjac.jvp(lambda x: x @ x, x, np.array([1.0, 0.0])), 8))
    2.0
    """
    jv, _ = jvp_with_info(f, x, v, method=method, order=order, step=step, vectorized=vectorized,
                          max_memory=max_memory, executor=executor, progress=progress)
    return jv


def direction_steps(x0, V, stencil, eps, step=None):
    """Step ``t`` per direction: ``rel * max(1, max|x|) / max|v|``, so no element moves
    further than :func:`jacobian` would move the largest; or the user's ``step``."""
    vmax = np.max(np.abs(V), axis=1) if V.size else np.zeros(V.shape[0])
    if step is None:
        scale = max(1.0, float(np.max(np.abs(x0), initial=0.0)))
        return relative_step(stencil, eps) * scale / np.where(vmax > 0, vmax, 1.0), vmax
    flat = check_step(step, np.empty(V.shape[0]))
    return np.broadcast_to(flat.astype(np.float64), (V.shape[0],)).copy(), vmax


def jvp_with_info(f, x, v, *, method="central", order=None, step=None, vectorized="auto",
                  max_memory=None, executor=None, progress="auto"):
    """:func:`jvp` plus its :class:`JacobianInfo` (``step`` holds ``t`` per direction)."""
    t_start = time.perf_counter()
    check_callable(f)
    prep = prepare(f, x, method=method, order=order, vectorized=vectorized,
                   max_memory=max_memory, executor=executor, progress=progress)
    x_shape = prep.x_shape
    if prep.spec is not None:
        V, batched = pack_like(prep.spec, v)
        V = V.astype(prep.x0.dtype)
        single = not batched
    else:
        V = as_point(v, "v")
        single = V.shape == x_shape
        if not single and V.shape[1:] != x_shape:
            raise ValueError(
                f"`v` must have the shape of x {x_shape} or (k, *x.shape); got {V.shape}.")
    V = V.reshape(-1 if not single else 1, prep.n).astype(prep.x0.dtype)
    t, vmax = direction_steps(prep.x0, V, prep.stencil, prep.eps, step)
    t = t.astype(prep.x0.dtype)
    k, m = V.shape[0], prep.m
    out = np.zeros((k, m), dtype=prep.dtype)
    stats = None
    if k and m and prep.n:
        inv_t = (1.0 / t).astype(prep.dtype)

        def scatter(block, D):
            lo = int(block.cols[0])
            out[lo:lo + block.size] = D[0] * inv_t[lo:lo + block.size, None]

        from ._engine import dense_source

        stats = run(prep, dense_source(V * t[:, None]), scatter, count=k)
        out[vmax == 0] = 0.0
    info = make_info(prep, t, stats, t_start)
    out = out.reshape((k,) + prep.out_shape)
    return (out[0] if single else out), info


def numeric_jacobian(x, f, epsilon=1e-4):
    """Drop-in for the notebook's ``numeric_jacobian(x, f, epsilon)``, served by the engine.

    Same signature and the same fixed absolute step ``epsilon`` with central
    differences, so results match the notebook's loop to rounding.

    Examples
    --------
    >>> import numpy as np, fastjac
    >>> fastjac.numeric_jacobian(np.array([1.0, 2.0]), lambda x: x ** 2).round(6)
    array([[2., 0.],
           [0., 4.]])
    """
    return jacobian(f, x, method="central", order=2, step=epsilon)

