"""Measure only what you need: projections and sampled columns of J.

A full Jacobian costs ``S * n`` evaluations of ``f``.  Often a few numbers
suffice to check a derivative:

``fastjac.jvp(f, x, V)``
    ``J @ v`` for ``k`` directions: ``S * k`` evaluations, one batched stack.
:func:`vjp`
    ``u^T J`` shaped like ``x``: the gradient of the scalar ``<u, f(x)>``.
    Costs ``S * n`` evaluations but never stores ``J`` (memory ``O(n)``).
:func:`project`
    ``u^T J v``: ``S * k`` evaluations, a scalar per direction.  Compare with
    ``<u, analytic_vjp(u)> . v`` to check a backward pass in two evaluations.
:func:`sampled_jacobian`
    The columns ``J[..., j]`` for a chosen or random set of ``j``: ``S * k``
    evaluations.

All accept a tuple/dict ``x`` (``f(*x)`` / ``f(**x)``): ``v`` and results
then come in the same container; ``sampled_jacobian`` indexes the packed
vector of all inputs (``info`` tells which input each index belongs to).
"""
from __future__ import annotations

import time

import numpy as np

from ._engine import coordinate_source, make_info, prepare, run
from ._inputs import is_multi, pack_like
from ._validate import check_seed

__all__ = ["vjp", "project", "sampled_jacobian", "sampled_jacobian_with_info"]


def vjp(f, x, u, *, method="central", order=None, step=None, vectorized="auto",
        max_memory=None, executor=None, progress="auto"):
    """Numeric vector-Jacobian product ``u^T J(x)``, shaped like ``x``.

    Parameters
    ----------
    f : callable
    x : array_like, or tuple/dict of array_like
    u : array_like, shape f(x).shape or (k, *f(x).shape)
        One cotangent, or ``k`` of them (each gives one row of the result).
    method, order, step, vectorized, max_memory, executor, progress :
        As for :func:`fastjac.jacobian`.

    Returns
    -------
    ndarray, shape x.shape or (k, *x.shape)
        For tuple/dict ``x``, the same container of such arrays.

    Notes
    -----
    Each block's differences are contracted with ``u`` as they arrive, so
    ``J`` is never formed (memory ``O(n + block * m)``) and the result is the
    gradient of ``g(x) = <u, f(x)>``: the error model is that of
    :func:`fastjac.gradient` applied to ``g``, truncation
    ``~ h**p |g^(p+1)|`` plus round-off ``~ EPS |u| |f| / h``.

    Examples
    --------
    >>> import numpy as np, fastjac
    >>> A = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    >>> g = fastjac.vjp(lambda x: A @ x, np.zeros(2), np.array([1.0, 0.0, -1.0]))
    >>> np.allclose(g, [-4.0, -4.0])
    True
    """
    prep = prepare(f, x, method=method, order=order, vectorized=vectorized,
                   max_memory=max_memory, executor=executor, progress=progress)
    fx = prep.fx
    U = np.asarray(u, dtype=np.float64)
    if U.shape == fx.shape:
        lead = 0
    elif U.shape[1:] == fx.shape and U.ndim == fx.ndim + 1:
        lead = 1
    else:
        raise ValueError(
            f"`u` must have the shape of f(x) {fx.shape} or (k, *f(x).shape); got {U.shape}.")
    Uf = U.reshape(-1, prep.m).astype(prep.dtype)          # (k, m)
    if step is not None and prep.spec is not None and is_multi(step):
        step = pack_like(prep.spec, step, "step")[0]
    h = prep.steps(step)
    out = np.zeros((Uf.shape[0], prep.n), dtype=prep.dtype)
    inv_h = (1.0 / h).astype(prep.dtype)

    def scatter(block, D):
        lo = int(block.cols[0])
        # u^T J for this block's columns: the differences contracted with u, J never formed.
        out[:, lo:lo + block.size] = (Uf @ D[0].T) * inv_h[lo:lo + block.size]

    if prep.n and prep.m:
        run(prep, coordinate_source(h), scatter, count=prep.n, tune=h)
    res = out.reshape((Uf.shape[0],) + prep.x_shape)
    if prep.spec is not None:
        parts = prep.spec.split(out.reshape(Uf.shape[0], prep.n), (Uf.shape[0],))
        if lead == 0:
            return tuple(p[0] for p in parts) if prep.spec.kind == "tuple" else \
                {k: p[0] for k, p in parts.items()}
        return parts
    return res if lead else res[0]


def project(f, x, u, v, *, method="central", order=None, step=None, vectorized="auto",
            max_memory=None, executor=None, progress="auto"):
    """``u^T J(x) v`` for one or ``k`` directions, from ``S * k`` evaluations.

    Parameters
    ----------
    f : callable
    x : array_like, or tuple/dict of array_like
    u : array_like, shape f(x).shape
    v : array_like, shape x.shape or (k, *x.shape) (or containers like x)
    method, order, step, vectorized, max_memory, executor, progress :
        As for :func:`fastjac.jvp`.

    Returns
    -------
    float or ndarray of shape (k,)

    Examples
    --------
    >>> import numpy as np
    >>> from fastjac.directional import project
    >>> A = np.array([[1.0, 2.0], [3.0, 4.0]])
    >>> round(float(project(lambda x: A @ x, np.zeros(2), np.array([1.0, 0]),
    ...                     np.array([0, 1.0]))), 8)
    2.0
    """
    from .engine import jvp

    jv = np.asarray(jvp(f, x, v, method=method, order=order, step=step, vectorized=vectorized,
                        max_memory=max_memory, executor=executor, progress=progress))
    U = np.asarray(u, dtype=jv.dtype)
    lead = jv.ndim - U.ndim
    if lead not in (0, 1) or jv.shape[lead:] != U.shape:
        raise ValueError(
            f"`u` must have the shape of f(x) {jv.shape[lead:]}; got {U.shape}.")
    out = np.tensordot(jv, U, axes=U.ndim)
    return float(out) if lead == 0 else out


def _choose_index(index, size, seed, n, x_shape):
    if index is None:
        k = min(n, 32) if size is None else size
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= n:
            raise ValueError(f"`size` must be an int in [0, {n}]; got {size!r}.")
        rng = np.random.default_rng(check_seed(seed))
        return np.sort(rng.choice(n, size=int(k), replace=False)).astype(np.int64)
    if size is not None:
        raise ValueError("give either `index` or `size`, not both.")
    if isinstance(index, tuple):  # a multi-index, as from np.nonzero or np.unravel_index
        if len(index) != len(x_shape):
            raise ValueError(
                f"`index` as a tuple must hold one index array per axis of x {x_shape}; "
                f"got {len(index)}.")
        index = np.ravel_multi_index(tuple(np.asarray(i) for i in index), x_shape)
    idx = np.asarray(index)
    if idx.dtype.kind not in "iu" or idx.ndim > 1:
        raise TypeError(
            f"`index` must be a 1-d array of flat int indices into x (or a tuple of index "
            f"arrays); got dtype {idx.dtype} and shape {idx.shape}.")
    idx = idx.reshape(-1).astype(np.int64)
    if idx.size and (idx.min() < -n or idx.max() >= n):
        raise ValueError(f"`index` must lie in [-{n}, {n}) for x of size {n}; got {index!r}.")
    return np.where(idx < 0, idx + n, idx)


def sampled_jacobian(f, x, index=None, *, size=None, seed=None, method="central", order=None,
                     step=None, vectorized="auto", max_memory=None, executor=None,
                     progress="auto"):
    """Numeric derivative for a chosen or random subset of input coordinates.

    Parameters
    ----------
    f : callable
    x : array_like, or tuple/dict of array_like
    index : array_like of int or tuple of arrays, optional
        Flat indices into ``x`` (into the packed vector of all inputs for a
        tuple/dict ``x``), or a multi-index tuple.  Default: ``size``
        coordinates drawn without replacement.
    size : int, optional
        How many coordinates to draw when ``index`` is None (default
        ``min(x.size, 32)``).
    seed : int or numpy.random.Generator, optional
    method, order, step, vectorized, max_memory, executor, progress :
        As for :func:`fastjac.jacobian`.

    Returns
    -------
    columns : ndarray, shape f(x).shape + (k,)
        ``columns[..., i] == J[..., index[i]]`` (``J`` on the flattened x).
    index : ndarray of int64, shape (k,)
        The flat indices used (``np.unravel_index(index, x.shape)`` for
        positions).

    Notes
    -----
    Costs ``S * k`` evaluations of ``f``, batched into as few calls as the
    memory budget allows; the error model is that of :func:`fastjac.jacobian`
    per column.

    Examples
    --------
    >>> import numpy as np, fastjac
    >>> cols, idx = fastjac.sampled_jacobian(lambda x: x ** 2, np.arange(5.0), [1, 3])
    >>> cols.round(6)
    array([[0., 0.],
           [2., 0.],
           [0., 0.],
           [0., 6.],
           [0., 0.]])
    """
    cols, idx, _ = sampled_jacobian_with_info(f, x, index, size=size, seed=seed, method=method,
                                              order=order, step=step, vectorized=vectorized,
                                              max_memory=max_memory, executor=executor,
                                              progress=progress)
    return cols, idx


def sampled_jacobian_with_info(f, x, index=None, *, size=None, seed=None, method="central",
                               order=None, step=None, vectorized="auto", max_memory=None,
                               executor=None, progress="auto"):
    """:func:`sampled_jacobian` plus its :class:`~fastjac.engine.JacobianInfo`
    (``info.step`` holds the steps of the sampled coordinates)."""
    t_start = time.perf_counter()
    prep = prepare(f, x, method=method, order=order, vectorized=vectorized,
                   max_memory=max_memory, executor=executor, progress=progress)
    if step is not None and prep.spec is not None and is_multi(step):
        step = pack_like(prep.spec, step, "step")[0]
    h = prep.steps(step)
    idx = _choose_index(index, size, seed, prep.n, prep.x_shape)
    k, m = idx.size, prep.m
    out = np.zeros((k, m), dtype=prep.dtype)
    inv_h = (1.0 / h).astype(prep.dtype)

    def scatter(block, D):
        lo = int(block.cols[0])
        out[lo:lo + block.size] = D[0] * inv_h[block.indices][:, None]

    stats = run(prep, coordinate_source(h, idx), scatter, count=k) if k and m else None
    info = make_info(prep, h[idx], stats, t_start)
    if stats is None:
        info.strategy = "empty"
    cols = np.moveaxis(out.reshape((k,) + tuple(prep.out_shape)), 0, -1)
    return cols, idx, info
