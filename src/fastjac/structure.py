"""Structured Jacobians: perturb columns that share no output together.

A dense Jacobian costs one perturbation (``S`` points) per input element.
When the sparsity pattern ``P`` of ``J`` is known, columns whose nonzeros
sit in disjoint rows can be moved *at the same time*: each output still
sees at most one of them move, so one evaluation recovers them all
(Curtis, Powell & Reid 1974).  The number of evaluations then scales with
the number of colors (groups), not with ``n``:

=====================================  ================================
``sparsity=``                          colors (evaluations = S x colors)
=====================================  ================================
``"diagonal"`` (elementwise ``f``)     1
tridiagonal pattern                    3
``batch_independent(axis=...)``        ``x.size / batch``
random boolean pattern ``P``           greedy, at most ``n``
=====================================  ================================

The estimate for column ``j`` in group ``g`` is ``J[i, j] = D_g[i] / h_j`` for
every ``i`` with ``P[i, j]``, where ``D_g`` is the stencil combination of the
evaluations along the group's direction.  Entries outside ``P`` are zero by
assumption: a pattern that misses a true nonzero gives wrong numbers (the
missed entry leaks into the entries of its row's group-mates).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from ._engine import (SparseDirections, dense_jacobian, guard_result, make_info, prepare, run)
from ._inputs import is_multi, pack_like
from ._jit import lazy_njit

__all__ = ["batch_independent", "BatchIndependent", "color_columns", "structured_jacobian",
           "OUTPUTS", "ColorBlocks", "resolve", "split_output", "check_output"]

#: Output formats of a structured Jacobian.
OUTPUTS = ("dense", "sparse", "diagonal")

_NAMED = ("diagonal",)


@dataclass(frozen=True)
class BatchIndependent:
    """Sparsity of a map applied independently to each sample along an axis.

    ``J[o, i]`` can be nonzero only if output ``o`` and input ``i`` belong to
    the same sample.  Create it with :func:`batch_independent`.
    """

    x_axis: int
    out_axis: int


def batch_independent(axis=None, *, x_axis=None, out_axis=None) -> BatchIndependent:
    """Pattern of a function applied sample by sample along one axis.

    Parameters
    ----------
    axis : int, optional
        The sample axis of both ``x`` and ``f(x)``.
    x_axis, out_axis : int, optional
        The sample axis of ``x`` and of ``f(x)`` when they differ; each
        defaults to ``axis``.  In the column-major layout (features on axis 0,
        samples on axis 1) use ``axis=1``.

    Returns
    -------
    BatchIndependent
        Pass it as ``sparsity=`` to :func:`fastjac.jacobian`.

    Notes
    -----
    The colors are the input's features: all samples of one feature move
    together, so a layer on ``B`` samples costs ``S * x.size / B``
    evaluations instead of ``S * x.size``.

    Examples
    --------
    >>> import numpy as np, fastjac
    >>> x = np.arange(6.0).reshape(2, 3)        # 2 features, 3 samples
    >>> f = lambda X: np.tanh(X[::-1] * X)      # mixes features, not samples
    >>> J, info = fastjac.engine.jacobian_with_info(
    ...     f, x, sparsity=fastjac.batch_independent(axis=1))
    >>> J, info = fastjac.engine.jacobian_with_info(   # the plan is reused: no probe
    ...     f, x, sparsity=fastjac.batch_independent(axis=1))
    >>> info.nfev                                # f(x) + 2 points x 2 features
    5
    >>> np.allclose(J, fastjac.jacobian(f, x))
    True
    """
    x_axis = axis if x_axis is None else x_axis
    out_axis = axis if out_axis is None else out_axis
    for name, value in (("x_axis", x_axis), ("out_axis", out_axis)):
        if value is None or isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise TypeError(
                f"`{name}` must be an int (or give `axis=` for both); got {value!r}.")
    return BatchIndependent(int(x_axis), int(out_axis))


# --------------------------------------------------------------------------
# Coloring


def _greedy_color(n, col_ptr, col_rows, row_ptr, row_cols):
    # For column j, stamp every color used by a column that shares a row with
    # j, then take the smallest unstamped color.  ``mark`` is stamped with j,
    # so it never needs clearing.
    color = np.full(n, -1, np.int64)
    mark = np.full(n + 1, -1, np.int64)
    ncolors = 0
    for j in range(n):
        for p in range(col_ptr[j], col_ptr[j + 1]):
            r = col_rows[p]
            for q in range(row_ptr[r], row_ptr[r + 1]):
                c = color[row_cols[q]]
                if c >= 0:
                    mark[c] = j
        c = 0
        while mark[c] == j:
            c += 1
        color[j] = c
        if c + 1 > ncolors:
            ncolors = c + 1
    return color, ncolors


_GREEDY = lazy_njit(_greedy_color)


def _ptr(keys, size):
    return np.concatenate(([0], np.cumsum(np.bincount(keys, minlength=size)))).astype(np.int64)


def color_columns(rows, cols, shape):
    """Greedy Curtis-Powell-Reid coloring of a pattern given as coordinates.

    Parameters
    ----------
    rows, cols : ndarray of int, shape (nnz,)
        Coordinates of the nonzeros of ``P`` (no duplicates).
    shape : tuple of int
        ``(m, n)``.

    Returns
    -------
    colors : ndarray of int64, shape (n,)
        Columns of equal color share no row.
    ncolors : int

    Notes
    -----
    Columns are visited in natural order (optimal for banded patterns: a
    band of width ``w`` takes ``w`` colors), each taking the smallest color
    not used by a column it shares a row with.  Cost
    ``O(sum_i nnz(row i)**2)``; a pattern whose rows are all disjoint
    (elementwise, block diagonal) skips the search and takes one color.
    Compiled with Numba on first use.

    Examples
    --------
    >>> import numpy as np
    >>> P = np.eye(4, dtype=bool) | np.eye(4, k=1, dtype=bool)
    >>> colors, k = color_columns(*np.nonzero(P), P.shape)
    >>> colors.tolist(), k
    ([0, 1, 0, 1], 2)
    """
    m, n = shape
    rows = np.asarray(rows, dtype=np.int64)
    cols = np.asarray(cols, dtype=np.int64)
    if n == 0:
        return np.zeros(0, np.int64), 0
    if rows.size == 0 or np.bincount(rows, minlength=m).max() <= 1:
        return np.zeros(n, np.int64), 1  # no two columns share a row
    by_col = np.lexsort((rows, cols))
    by_row = np.lexsort((cols, rows))
    colors, ncolors = _GREEDY(n, _ptr(cols, n), rows[by_col], _ptr(rows, m), cols[by_row])
    return colors, int(ncolors)


# --------------------------------------------------------------------------
# Patterns -> (rows, cols) of the nonzeros


def _is_scipy_sparse(P) -> bool:
    return type(P).__module__.startswith("scipy.sparse") and hasattr(P, "tocoo")


def _pattern_coords(P, out_shape, x_shape, m, n):
    """Nonzero coordinates of a boolean pattern given as ndarray or scipy.sparse."""
    if _is_scipy_sparse(P):
        if P.shape != (m, n):
            raise ValueError(
                f"`sparsity` as a scipy.sparse matrix must have shape (m, n) = {(m, n)}; "
                f"got {P.shape}.")
        # Canonical CSR (sorted, one entry per position) of "is nonzero", on a
        # copy: duplicates of a COO input are merged, explicit zeros dropped,
        # and counts (not values) are summed so that nothing can cancel.
        # Much cheaper than np.unique over the coordinates (57 ms of 89 ms
        # for a tridiagonal pattern at n = 1e5).
        csr = P.tocsr(copy=True)
        csr.data = (csr.data != 0).astype(np.int8)
        csr.eliminate_zeros()
        csr.sum_duplicates()
        rows = np.repeat(np.arange(m, dtype=np.int64), np.diff(csr.indptr))
        return rows, csr.indices.astype(np.int64)
    arr = np.asarray(P)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"`sparsity` must be a boolean array; got dtype {arr.dtype}.")
    if arr.shape not in ((m, n), tuple(out_shape) + tuple(x_shape)):
        raise ValueError(
            f"`sparsity` must have the shape of J, {tuple(out_shape) + tuple(x_shape)}, "
            f"or (m, n) = {(m, n)}; got {arr.shape}.")
    rows, cols = np.nonzero(arr.reshape(m, n))
    return rows.astype(np.int64), cols.astype(np.int64)


def _join_container(sparsity, spec, m):
    """A tuple/dict of per-input patterns, side by side as one (m, N) pattern."""
    parts = [sparsity[k] for k in spec.keys] if spec.kind == "dict" else list(sparsity)
    if len(parts) != len(spec.shapes) or (spec.kind == "dict") != isinstance(sparsity, dict):
        raise ValueError(
            f"`sparsity` must be a {spec.kind} with one pattern per input ({list(spec.keys)}), "
            f"or one pattern of shape (m, N) = {(m, spec.size)}; got {type(sparsity).__name__}.")
    if any(_is_scipy_sparse(p) for p in parts):
        import scipy.sparse as sp

        return sp.hstack([p if _is_scipy_sparse(p) else sp.coo_array(np.reshape(p, (m, -1)))
                          for p in parts]).tocoo()
    return np.concatenate([np.reshape(np.asarray(p), (m, -1)) for p in parts], axis=1)


@dataclass
class _Structure:
    """Colors plus the nonzeros, as ``J2d[rows, cols] = values`` broadcastable index arrays.

    ``kind == "pattern"``: ``rows``, ``cols`` of shape (nnz,) sorted by color,
    ``cptr[g]:cptr[g+1]`` the nonzeros of color ``g``.
    ``kind == "batch"``: ``rows`` (B, Mf, 1), ``cols`` (B, 1, Nf) index the
    per-sample dense blocks ``Jb[b, of, g]``.
    """

    kind: str
    colors: np.ndarray
    ncolors: int
    rows: np.ndarray
    cols: np.ndarray
    cptr: np.ndarray = None
    batch: tuple = None      # (B, Mf, Nf) for kind "batch"
    diagonal: bool = False   # rows == cols == arange(n), one color

    def groups(self):
        """Columns sorted by color and the pointer of each color's run."""
        if self.diagonal:
            return self.cols, np.array([0, len(self.cols)], np.int64)
        order = np.argsort(self.colors, kind="stable")
        return order, _ptr(self.colors, self.ncolors)


def _pattern_structure(rows, cols, m, n):
    colors, ncolors = color_columns(rows, cols, (m, n))
    nzc = colors[cols]
    order = np.argsort(nzc, kind="stable")
    return _Structure("pattern", colors, ncolors, rows[order], cols[order],
                      cptr=_ptr(nzc, ncolors))


def _batch_structure(sp, x_shape, out_shape):
    xa, oa = sp.x_axis, sp.out_axis
    if not -len(x_shape) <= xa < len(x_shape) or not -len(out_shape) <= oa < len(out_shape):
        raise ValueError(
            f"`sparsity=batch_independent(x_axis={xa}, out_axis={oa})` names an axis that x "
            f"{tuple(x_shape)} or f(x) {tuple(out_shape)} does not have.")
    B = x_shape[xa]
    if out_shape[oa] != B:
        raise ValueError(
            f"`sparsity=batch_independent(...)`: x has {B} samples on axis {xa} but f(x) "
            f"{tuple(out_shape)} has {out_shape[oa]} on axis {oa}; they must match.")
    n = int(np.prod(x_shape, dtype=np.int64))
    m = int(np.prod(out_shape, dtype=np.int64))
    # Flat index of every (sample, feature) pair, with the sample axis first.
    xi = np.moveaxis(np.arange(n).reshape(x_shape), xa, 0).reshape(B, -1)   # (B, Nf)
    oi = np.moveaxis(np.arange(m).reshape(out_shape), oa, 0).reshape(B, -1)  # (B, Mf)
    colors = np.empty(n, np.int64)
    colors[xi] = np.arange(xi.shape[1])[None, :]
    return _Structure("batch", colors, xi.shape[1], oi[:, :, None], xi[:, None, :],
                      batch=(B, oi.shape[1], xi.shape[1]))


def resolve(sparsity, x_shape, out_shape, spec=None) -> _Structure:
    """Turn any accepted ``sparsity`` into a :class:`_Structure`."""
    n = int(np.prod(x_shape, dtype=np.int64))
    m = int(np.prod(out_shape, dtype=np.int64))
    if isinstance(sparsity, str):
        if sparsity not in _NAMED:
            raise ValueError(
                f"`sparsity` must be one of {list(_NAMED)}, a boolean array shaped like J, "
                f"a scipy.sparse matrix or fastjac.batch_independent(...); got {sparsity!r}.")
        if m != n:
            raise ValueError(
                f"`sparsity='diagonal'` needs an elementwise f with f(x).size == x.size; "
                f"got f(x) of shape {tuple(out_shape)} for x of size {n}.")
        idx = np.arange(n, dtype=np.int64)
        return _Structure("pattern", np.zeros(n, np.int64), int(n > 0), idx, idx,
                          cptr=np.array([0, n] if n else [0], np.int64), diagonal=True)
    if isinstance(sparsity, BatchIndependent):
        if spec is not None:
            raise ValueError(
                "`sparsity=batch_independent(...)` needs a single array x; for a tuple/dict "
                "of inputs pass a boolean pattern (one per input, or one of shape (m, N)).")
        return _batch_structure(sparsity, tuple(x_shape), tuple(out_shape))
    if spec is not None and isinstance(sparsity, (tuple, dict, list)):
        sparsity = _join_container(sparsity, spec, m)
    rows, cols = _pattern_coords(sparsity, out_shape, x_shape, m, n)
    return _pattern_structure(rows, cols, m, n)


# --------------------------------------------------------------------------
# Evaluation


class ColorBlocks:
    """:class:`~fastjac._engine.SparseDirections` over consecutive colors, built lazily."""

    def __init__(self, structure, h, block_size):
        self.structure, self.h, self.size = structure, h, max(1, int(block_size))
        self.order, self.gptr = structure.groups()

    def __len__(self):
        return -(-self.structure.ncolors // self.size)

    def __iter__(self):
        order, gptr, h = self.order, self.gptr, self.h
        for g0 in range(0, self.structure.ncolors, self.size):
            g1 = min(self.structure.ncolors, g0 + self.size)
            lo, hi = gptr[g0], gptr[g1]
            idx = order[lo:hi]
            yield SparseDirections(gptr[g0:g1 + 1] - lo, idx, h[idx], np.arange(g0, g1))


def _scatter_for(structure, vals, h, dtype):
    inv_h = (1.0 / h).astype(dtype)
    if structure.diagonal:
        def scatter(block, D):  # one color, rows == cols: no gather needed
            for e in range(len(vals)):
                np.multiply(D[e, 0], inv_h, out=vals[e])
        return scatter
    if structure.kind == "pattern":
        rows, cols, cptr = structure.rows, structure.cols, structure.cptr
        colors = structure.colors

        def scatter(block, D):
            g0, g1 = int(block.cols[0]), int(block.cols[-1]) + 1
            lo, hi = cptr[g0], cptr[g1]
            c = cols[lo:hi]
            local = colors[c] - g0
            for e in range(len(vals)):
                vals[e][lo:hi] = D[e, local, rows[lo:hi]] * inv_h[c]
        return scatter

    B, Mf, Nf = structure.batch
    ocols = structure.rows[:, :, 0]  # (B, Mf): flat output index per (sample, feature)
    xcols = structure.cols[:, 0, :]  # (B, Nf)

    def scatter(block, D):
        g0, g1 = int(block.cols[0]), int(block.cols[-1]) + 1
        # D[e, g, o] for outputs o of sample b lands in Jb[b, :, g].
        Dg = D[:, :, ocols]                                   # (E, b, B, Mf)
        scale = inv_h[xcols[:, g0:g1]]                        # (B, b)
        for e in range(len(vals)):
            vals[e][:, :, g0:g1] = np.transpose(Dg[e], (1, 2, 0)) * scale[:, None, :]
    return scatter


def _diagonal_of(structure, v, n, dtype):
    if structure.diagonal:
        return v
    rows, cols = np.broadcast_arrays(structure.rows, structure.cols)
    if not np.array_equal(rows, cols):
        raise ValueError(
            "`output='diagonal'` needs a pattern with nonzeros on the diagonal only; "
            "this sparsity has off-diagonal entries. Use output='dense' or 'sparse'.")
    out = np.zeros(n, dtype=dtype)
    out[cols.ravel()] = np.broadcast_to(v, rows.shape).ravel()
    return out


def _format(structure, v, output, m, n, out_shape, x_shape, dtype):
    if output == "dense":
        J = np.zeros((m, n), dtype=dtype)
        J[structure.rows, structure.cols] = v
        return J.reshape(tuple(out_shape) + tuple(x_shape))
    if output == "diagonal":
        if m != n:
            raise ValueError(
                f"`output='diagonal'` needs f(x).size == x.size; got f(x) of shape "
                f"{tuple(out_shape)} for x of shape {tuple(x_shape)}.")
        return _diagonal_of(structure, v, n, dtype).reshape(x_shape)
    import scipy.sparse as sp

    rows, cols = np.broadcast_arrays(structure.rows, structure.cols)
    return sp.csr_array((np.broadcast_to(v, rows.shape).ravel(), (rows.ravel(), cols.ravel())),
                        shape=(m, n))


def split_output(spec, J, output, out_shape):
    """Cut a structured result over the packed inputs into one part per input."""
    if output == "dense":
        return spec.split(J, out_shape)
    if output == "diagonal":
        return spec.split(J, ())
    parts = [J[:, a:b] for a, b in spec.bounds]  # CSR column blocks, (m, n_i)
    return tuple(parts) if spec.kind == "tuple" else dict(zip(spec.keys, parts))


def check_output(output):
    if output not in OUTPUTS:
        raise ValueError(f"`output` must be one of {list(OUTPUTS)}; got {output!r}.")


def structured_jacobian(f, x, *, sparsity, output, method, order, step, vectorized,
                        max_memory, executor, progress, combos, f0=None):
    """Engine entry for ``sparsity=`` / ``output=``.

    Returns ``(J, info)`` with ``J`` formatted per ``output``; ``info.extra``
    holds the ``combos`` estimates in the same format.  For tuple/dict ``x``
    the result is split into one part per input.
    """
    t_start = time.perf_counter()
    check_output(output)
    if sparsity is None and output == "diagonal":
        raise ValueError(
            "`output='diagonal'` needs `sparsity` ('diagonal' for an elementwise f): "
            "without it every column must be evaluated anyway; use output='dense'.")
    prep = prepare(f, x, method=method, order=order, vectorized=vectorized,
                   max_memory=max_memory, executor=executor, progress=progress, f0=f0)
    spec = prep.spec
    if step is not None and spec is not None and is_multi(step):
        step = pack_like(spec, step, "step")[0]
    h = prep.steps(step)
    n, m, dtype = prep.n, prep.m, prep.dtype
    estimates = [prep.stencil.weights] + list(combos or [])
    if sparsity is None:
        # output='sparse' without a pattern: a dense run, converted.
        import scipy.sparse as sp

        JT, stats = dense_jacobian(prep, h, estimates) if n and m else (
            [np.zeros((n, m), dtype) for _ in estimates], None)
        Js = [sp.csr_array(jt.T) for jt in JT]
        info = make_info(prep, h.reshape(prep.x_shape), stats, t_start)
    else:
        structure = resolve(sparsity, prep.x_shape, prep.out_shape, spec)
        if structure.kind == "batch":
            B, Mf, Nf = structure.batch
            vals = [np.zeros((B, Mf, Nf), dtype=dtype) for _ in estimates]
        else:
            vals = [np.zeros(len(structure.rows), dtype=dtype) for _ in estimates]
        value_bytes = sum(v.nbytes for v in vals)
        # What the chosen format allocates on top of the values: J itself, the
        # diagonal, or CSR data plus int64 indices (~3x the values while built).
        out_bytes = {"dense": len(estimates) * m * n * dtype.itemsize,
                     "diagonal": len(estimates) * n * dtype.itemsize,
                     "sparse": 3 * value_bytes}[output]
        guard_result(out_bytes + value_bytes, prep.out_shape + prep.x_shape, structured=True)
        stats = None
        if n and m and structure.ncolors:
            scatter = _scatter_for(structure, vals, h, dtype)
            stats = run(prep, lambda b: ColorBlocks(structure, h, b), scatter,
                        count=structure.ncolors, combos=estimates)
        info = make_info(prep, h.reshape(prep.x_shape), stats, t_start)
        info.ncolors = structure.ncolors
        Js = [_format(structure, v, output, m, n, prep.out_shape, prep.x_shape, dtype)
              for v in vals]
    if stats is None:
        info.strategy = "empty"
    info.extra = Js[1:]
    if spec is not None:
        info.step = spec.split(info.step, ())
        info.extra = [split_output(spec, E, output, info.fx.shape) for E in info.extra]
        return split_output(spec, Js[0], output, info.fx.shape), info
    return Js[0], info
