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

import numpy as np

from ._inputs import is_multi, pack, pack_like

__all__ = ["vjp", "project", "sampled_jacobian", "sampled_jacobian_with_info"]


class _Contract:
    """``x -> <u, f(x)>`` for one point or a batch; picklable (for executors)."""

    def __init__(self, f, u, lead):
        self.f, self.u, self._lead = f, u, lead

    def __call__(self, *args, **kwargs):
        y = np.asarray(self.f(*args, **kwargs))
        d = self.u.ndim - self._lead
        # y: (*batch, *out); u: (*lead, *out) -> (*batch, *lead).
        return np.tensordot(y, self.u, axes=(list(range(y.ndim - d, y.ndim)),
                                             list(range(self._lead, self.u.ndim))))


def vjp(f, x, u, **options):
    """Numeric vector-Jacobian product ``u^T J(x)``, shaped like ``x``.

    Parameters
    ----------
    f : callable
    x : array_like, or tuple/dict of array_like
    u : array_like, shape f(x).shape or (k, *f(x).shape)
        One cotangent, or ``k`` of them (each gives one row of the result).
    **options
        As for :func:`fastjac.jacobian` (``method``, ``order``, ``step``,
        ``vectorized``, ``max_memory``, ``executor``, ``progress``).

    Returns
    -------
    ndarray, shape x.shape or (k, *x.shape)
        For tuple/dict ``x``, the same container of such arrays.

    Notes
    -----
    Computed as the gradient of the scalar ``g(x) = <u, f(x)>`` (with the
    same batched engine), so the error model is that of :func:`fastjac.gradient`
    applied to ``g``: truncation ``~ h**p |g^(p+1)|`` plus round-off
    ``~ EPS |g| / h``.  Memory ``O(n)``: ``J`` is never formed.

    Examples
    --------
    >>> import numpy as np, fastjac
    >>> A = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    >>> g = fastjac.vjp(lambda x: A @ x, np.zeros(2), np.array([1.0, 0.0, -1.0]))
    >>> np.allclose(g, [-4.0, -4.0])
    True
    """
    from .engine import jacobian_with_info

    for bad in ("sparsity", "output"):
        if bad in options:
            raise TypeError(f"`{bad}` is not an option of vjp; use fastjac.jacobian for it.")
    fx = np.asarray(f(*x) if isinstance(x, tuple) and is_multi(x)
                    else f(**x) if isinstance(x, dict) else f(x))
    U = np.asarray(u, dtype=np.float64)
    if U.shape == fx.shape:
        lead = 0
    elif U.shape[1:] == fx.shape and U.ndim == fx.ndim + 1:
        lead = 1
    else:
        raise ValueError(
            f"`u` must have the shape of f(x) {fx.shape} or (k, *f(x).shape); got {U.shape}.")
    J, _ = jacobian_with_info(_Contract(f, U, lead), x, **options)
    return J


def project(f, x, u, v, **options):
    """``u^T J(x) v`` for one or ``k`` directions, from ``S * k`` evaluations.

    Parameters
    ----------
    f : callable
    x : array_like, or tuple/dict of array_like
    u : array_like, shape f(x).shape
    v : array_like, shape x.shape or (k, *x.shape) (or containers like x)
    **options
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

    jv = np.asarray(jvp(f, x, v, **options))
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
        rng = np.random.default_rng(seed)
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


def sampled_jacobian(f, x, index=None, *, size=None, seed=None, **options):
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
    **options
        As for :func:`fastjac.jacobian` (``method``, ``order``, ``step``,
        ``vectorized``, ``max_memory``, ``executor``, ``progress``).

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
    cols, idx, _ = sampled_jacobian_with_info(f, x, index, size=size, seed=seed, **options)
    return cols, idx


def sampled_jacobian_with_info(f, x, index=None, *, size=None, seed=None, method="central",
                               order=None, step=None, vectorized="auto", max_memory=None,
                               executor=None, progress="auto"):
    """:func:`sampled_jacobian` plus its :class:`~fastjac.engine.JacobianInfo`
    (``info.step`` holds the steps of the sampled coordinates)."""
    import time

    from . import engine as E
    from ._strategies import Evaluator, choose_strategy
    from .perturb import SparseDirections

    t_start = time.perf_counter()
    if is_multi(x):
        flat, spec = pack(x)
        if step is not None and is_multi(step):
            step = pack_like(spec, step, "step")[0]
        f, x = spec.wrap(f), flat
    p = E._prepare(f, x, method, order, step, vectorized, max_memory)
    idx = _choose_index(index, size, seed, p.n, p.x_shape)
    k, m = idx.size, p.m
    combos = [p.stencil.weights]
    info = E.JacobianInfo(fx=p.fx, stencil=p.stencil, step=p.h[idx], eps=p.eps,
                          strategy="none", nfev=1, ncalls=1)
    out = np.zeros((k, m), dtype=p.dtype)
    if k and m:
        S = p.stencil.evaluations_per_column
        ev = Evaluator(p.f, p.x0, p.x_shape, p.out_shape, p.stencil, p.dtype)
        b = E._block_size(S, p.n, m, np.dtype(ev.stack_dtype).itemsize, max_memory)
        blocks = []
        for lo in range(0, k, b):
            sel = idx[lo:lo + b]
            blocks.append(SparseDirections(np.arange(len(sel) + 1), sel, p.h[sel],
                                           np.arange(lo, lo + len(sel))))
        ev.strategy, first_F = choose_strategy(ev, vectorized, blocks[0], p.eps)
        inv_h = (1.0 / p.h).astype(p.dtype)

        def scatter(block, D):
            lo = int(block.cols[0])
            out[lo:lo + block.size] = D[0] * inv_h[block.indices][:, None]

        ncalls = E._evaluate_blocks(ev, blocks, first_F, combos, p.fx.reshape(m).astype(p.dtype),
                                    scatter, executor, progress)
        info.strategy = ev.strategy
        info.nfev += S * k
        info.ncalls += ncalls if ev.strategy == "vectorized" else S * k
        info.nblocks, info.block_size = len(blocks), b
    info.seconds = time.perf_counter() - t_start
    cols = np.moveaxis(out.reshape((k,) + tuple(p.out_shape)), 0, -1)
    return cols, idx, info
