"""Public entry points: ``jacobian``, ``gradient``, ``jvp`` and the notebook drop-in.

The pipeline of every call:

1. validate ``x`` into a private float copy and evaluate ``f(x)`` once;
2. choose the stencil (``stencils``) and the step actually taken (``steps``);
3. cut the perturbation directions into blocks sized by ``max_memory``
   (``perturb``) and evaluate each block with one strategy (``_strategies``);
4. combine the block's evaluations with the stencil weights and scatter the
   result into ``J``, laid out so that ``J.shape == f(x).shape + x.shape``.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from ._chunking import MIN_BLOCKS_TO_TUNE, TRIAL_FACTORS, TunedBlocks
from ._inputs import is_multi, pack, pack_like
from ._strategies import Evaluator, as_output, call_f, choose_strategy
from ._validate import as_point, describe
from .perturb import CoordinateBlocks, DenseDirections, readonly, stack_buffer
from .stencils import Stencil, get_stencil
from .steps import absolute_step, eps_for

__all__ = ["jacobian", "gradient", "jvp", "numeric_jacobian", "jacobian_with_info",
           "JacobianInfo", "DEFAULT_CHUNK_BYTES"]

#: Bytes of one chunk (perturbation stack plus f's output for it) to start
#: from.  ``benchmarks/bench_chunking.py`` found no single best size (64 KiB
#: to the whole stack).  256 KiB keeps an elementwise f's temporaries (half
#: the chunk each) under glibc's 128 KiB mmap threshold, so they are reused
#: from the heap instead of being mapped and page-faulted on every call; long
#: runs tune upwards from it by measurement (``_chunking``), to at most 4 MiB.
DEFAULT_CHUNK_BYTES = 1 << 18

_VECTORIZED_CHOICES = (True, False, "auto")
_LARGE_RESULT = 256 << 20


@dataclass
class JacobianInfo:
    """How a Jacobian was computed: what a check report needs to judge it.

    Attributes
    ----------
    fx : ndarray
        ``f(x)``.
    stencil : Stencil
    step : ndarray, shape x.shape
        The absolute step actually taken per element.
    eps : float
        Machine epsilon used by the step rule.
    strategy : str
        ``"vectorized"``, ``"loop"`` or ``"numba"``.
    nfev : int
        Points at which ``f`` was evaluated, ``f(x)`` included.
    ncalls : int
        Calls of ``f`` (a vectorized call evaluates many points).
    nblocks, block_size : int
        How the directions were chunked.
    extra : list of ndarray
        Further estimates requested through ``combos``, same shape as J.
    """

    fx: np.ndarray
    stencil: Stencil
    step: np.ndarray
    eps: float
    strategy: str
    nfev: int = 0
    ncalls: int = 0
    nblocks: int = 0
    block_size: int = 0
    seconds: float = 0.0
    extra: list = field(default_factory=list)
    #: Groups of columns perturbed together (``sparsity=`` runs; 0 otherwise).
    ncolors: int = 0
    #: Estimated peak bytes fastjac itself allocates (result plus one chunk).
    peak_bytes: int = 0


def _check_options(vectorized, max_memory):
    if vectorized not in _VECTORIZED_CHOICES or isinstance(vectorized, (int, float)) and not isinstance(vectorized, bool):
        raise ValueError(
            f"`vectorized` must be one of {list(_VECTORIZED_CHOICES)}; got {vectorized!r}.")
    if max_memory is not None:
        if isinstance(max_memory, bool) or not isinstance(max_memory, (int, np.integer)) or max_memory <= 0:
            raise ValueError(
                f"`max_memory` must be a positive number of bytes or None; got {max_memory!r}.")


def _check_step(step, x0):
    if step is None:
        return
    arr = np.asarray(step)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"`step` must be a positive number or array of them; got {describe(step)}.")
    if arr.ndim and arr.shape != x0.shape and arr.size != x0.size:
        raise ValueError(
            f"`step` must be a scalar or have one value per element of x {x0.shape}; "
            f"got shape {arr.shape}.")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"`step` must be finite and > 0; got {describe(step)}.")


def available_memory() -> int:
    """Bytes the OS reports as available (MemAvailable), or total RAM."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def _gib(nbytes):
    return f"{nbytes / 2**30:.2f} GiB"


def _evaluate_f0(f, x0, x_shape):
    y = call_f(f, readonly(x0.copy()).reshape(x_shape), " (at x itself)")
    arr = as_output(y)
    if arr.dtype.kind == "c":
        raise TypeError(
            f"`f` must return real values; got dtype {arr.dtype}. fastjac differentiates "
            "real-valued functions (the complex step uses complex values internally).")
    # Copied: f may hand back a buffer it reuses on the next call.
    return np.array(arr, copy=True)


def _result_dtype(x0, fx):
    dtype = np.result_type(x0.dtype, fx.dtype if fx.dtype.kind == "f" else np.float64)
    return np.dtype(np.float32) if dtype == np.float32 else np.dtype(np.float64)


def _block_size(S, n, m, itemsize, max_memory, chunk_bytes=None):
    per_direction = S * (n + m) * itemsize
    chunk_bytes = DEFAULT_CHUNK_BYTES if chunk_bytes is None else chunk_bytes
    budget = chunk_bytes if max_memory is None else min(max_memory, chunk_bytes)
    if max_memory is not None and per_direction > max_memory:
        raise MemoryError(
            f"`max_memory`={max_memory} bytes is smaller than the stack of one direction "
            f"({per_direction} bytes: {S} points x (n={n} inputs + m={m} outputs) x "
            f"{itemsize} bytes); raise max_memory or use jvp/sampled_jacobian.")
    return max(1, budget // per_direction)


def _guard_memory(result_bytes, j_shape, structured=False):
    """Raise before allocating when the result cannot fit in available memory."""
    # Reading /proc/meminfo costs ~30 µs, so only ask when the result is large.
    if result_bytes <= _LARGE_RESULT:
        return
    avail = available_memory()
    if result_bytes <= avail:
        return
    if structured:
        hint = ("Use output='sparse' (scipy CSR of shape (m, n)) or, for an elementwise f, "
                "output='diagonal'; or fastjac.jvp / fastjac.sampled_jacobian.")
    else:
        hint = ("Use fastjac.jvp for directional derivatives, fastjac.sampled_jacobian for "
                "a subset of columns, or sparsity=... with output='sparse' for a "
                "structured Jacobian.")
    raise MemoryError(
        f"the Jacobian of shape {tuple(j_shape)} needs {_gib(result_bytes)} but only "
        f"{_gib(avail)} is available. {hint}")


@dataclass
class _Prepared:
    """The common first steps of every entry point, for a single array x."""

    f: object
    stencil: Stencil
    x0: np.ndarray        # (n,) private working copy
    x_shape: tuple
    fx: np.ndarray
    out_shape: tuple
    n: int
    m: int
    eps: float
    h: np.ndarray         # (n,) step actually taken
    dtype: np.dtype


def _check_callable(f):
    if not callable(f):
        raise TypeError(f"`f` must be callable; got {describe(f)}.")


def _check_executor(executor):
    if executor is not None and not callable(getattr(executor, "submit", None)):
        raise TypeError(
            "`executor` must be a concurrent.futures.Executor or an object with the same "
            f"submit() method (e.g. a dask.distributed Client); got {describe(executor)}.")


def _prepare(f, x, method, order, step, vectorized, max_memory):
    """Validate, evaluate ``f(x)`` and choose steps: the first steps of every path."""
    _check_callable(f)
    stencil = get_stencil(method, order)
    _check_options(vectorized, max_memory)
    x0 = as_point(x)
    x_shape = x0.shape
    x0 = x0.reshape(-1)
    _check_step(step, x0)
    fx = _evaluate_f0(f, x0, x_shape)
    eps = eps_for(x0.dtype, fx.dtype)
    h = absolute_step(x0, stencil, eps, None if step is None else np.ravel(step))
    return _Prepared(f, stencil, x0, x_shape, fx, fx.shape, x0.size, fx.size, eps, h,
                     _result_dtype(x0, fx))


def _progress_bar(progress, nblocks, first_seconds):
    """tqdm over blocks: always for True, for "auto" only if slow and on a terminal."""
    if progress is False or progress is None or nblocks <= 1:
        return None
    if progress == "auto":
        slow = first_seconds * nblocks > 2.0
        if not (slow and hasattr(sys.stderr, "isatty") and sys.stderr.isatty()):
            return None
    elif progress is not True:
        raise ValueError(f"`progress` must be one of [True, False, 'auto']; got {progress!r}.")
    from tqdm.auto import tqdm

    return tqdm(total=nblocks, initial=1, unit="chunk", desc="fastjac", leave=False)


def _run_block(ev, block):
    """Evaluate one block (module-level so process executors can pickle it)."""
    return ev.evaluate(block)


def _split_combos(stencil, combos):
    """Weights of the evaluated offsets, and the weight of f(x), per estimate."""
    key = (stencil.offsets, tuple(tuple(r) for r in combos))
    got = _COMBO_CACHE.get(key)
    if got is None:
        W = np.asarray([[w for c, w in zip(stencil.offsets, row) if c != 0] for row in combos])
        centers = tuple(sum(w for c, w in zip(stencil.offsets, row) if c == 0) for row in combos)
        got = _COMBO_CACHE[key] = (W, centers)
    return got


_COMBO_CACHE: dict = {}


def _combine(F, fx_flat, stencil, combos):
    """``D_e = c_e f(x) + sum_s W[e, s] F[s]`` for every weight vector ``e``.

    The central-difference result lives in a per-thread scratch buffer (a
    fresh one per block would page-fault every time): callers must consume
    it, as every ``scatter`` does, before the next ``_combine``.
    """
    S, b, m = F.shape
    W, centers = _split_combos(stencil, combos)
    if S == 2 and len(combos) == 1 and W[0, 0] == -W[0, 1] and centers[0] == 0:
        D = stack_buffer(b * m * F.dtype.itemsize, F.dtype, "combine").reshape(b, m)
        np.subtract(F[1], F[0], out=D)  # central differences: one pass, no temporaries
        if W[0, 1] != 1:
            D *= W[0, 1]
        return D[None]
    D = np.tensordot(W.astype(F.dtype), F, axes=(1, 0))
    for e, c in enumerate(centers):
        if c:
            D[e] += c * fx_flat
    return D


def _in_process(ev, blocks, first_F):
    """``(block, F)`` pairs, evaluated lazily: a tuned block sequence times the
    work done between two requests (evaluate, combine, scatter)."""
    for k, block in enumerate(blocks):
        yield block, (first_F if (k == 0 and first_F is not None) else ev.evaluate(block))


def _evaluate_blocks(ev, blocks, first_F, combos, fx_flat, scatter, executor, progress):
    """Evaluate every block, combine it, hand it to ``scatter``; returns the block count."""
    if executor is not None:
        from ._parallel import map_blocks

        pairs = map_blocks(executor, ev, blocks, first_F)
    else:
        pairs = _in_process(ev, blocks, first_F)
    calls, bar = 0, None
    t0 = time.perf_counter()
    for k, (block, F) in enumerate(pairs):
        scatter(block, _combine(F, fx_flat, ev.stencil, combos))
        calls += 1
        if k == 0:
            bar = _progress_bar(progress, len(blocks), time.perf_counter() - t0)
        elif bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return calls


def jacobian_with_info(f, x, *, method="central", order=None, step=None, vectorized="auto",
                       max_memory=None, executor=None, progress="auto", combos=None,
                       sparsity=None, output="dense"):
    """Like :func:`jacobian`, and also return a :class:`JacobianInfo`.

    ``combos`` is an optional list of weight vectors over the stencil's
    offsets; each yields one more estimate of J from the *same* evaluations
    (the checks use it for free noise estimates).  The first estimate is
    always the stencil's own.  For tuple/dict ``x``, J, ``info.step`` and
    ``info.extra`` come back in the same container (``output='sparse'``: one
    CSR column block per input).
    """
    _check_callable(f)
    _check_executor(executor)
    options = dict(method=method, order=order, vectorized=vectorized, max_memory=max_memory,
                   executor=executor, progress=progress, combos=combos)
    structured = sparsity is not None or output != "dense"
    if not is_multi(x):
        if structured:
            from .structure import structured_jacobian

            return structured_jacobian(f, x, step=step, sparsity=sparsity, output=output,
                                       **options)
        return _jacobian_flat(f, x, step=step, **options)
    flat, spec = pack(x)
    if step is not None and is_multi(step):
        step = pack_like(spec, step, "step")[0]
    if structured:
        from .structure import split_output, structured_jacobian

        J, info = structured_jacobian(spec.wrap(f), flat, step=step, sparsity=sparsity,
                                      output=output, spec=spec, **options)
        info.step = spec.split(info.step, ())
        info.extra = [split_output(spec, E, output, info.fx.shape) for E in info.extra]
        return split_output(spec, J, output, info.fx.shape), info
    J, info = _jacobian_flat(spec.wrap(f), flat, step=step, **options)
    out_shape = info.fx.shape
    info.step = spec.split(info.step, ())
    info.extra = [spec.split(E, out_shape) for E in info.extra]
    return spec.split(J, out_shape), info


def _jacobian_flat(f, x, *, method, order, step, vectorized, max_memory, executor, progress,
                   combos):
    t_start = time.perf_counter()
    p = _prepare(f, x, method, order, step, vectorized, max_memory)
    stencil, x0, x_shape, fx, out_shape = p.stencil, p.x0, p.x_shape, p.fx, p.out_shape
    n, m, eps, h, dtype = p.n, p.m, p.eps, p.h, p.dtype
    combos = [stencil.weights] + list(combos or [])

    result_bytes = len(combos) * n * m * dtype.itemsize
    _guard_memory(result_bytes, out_shape + x_shape)
    JT = [np.empty((n, m), dtype=dtype) for _ in combos]
    info = JacobianInfo(fx=fx, stencil=stencil, step=h.reshape(x_shape), eps=eps,
                        strategy="none", nfev=1, ncalls=1)
    if n == 0 or m == 0:
        info.strategy = "empty"
        return _assemble(JT, out_shape, x_shape, info)

    S = stencil.evaluations_per_column
    ev = Evaluator(f, x0, x_shape, out_shape, stencil, dtype)
    b = _block_size(S, n, m, np.dtype(ev.stack_dtype).itemsize, max_memory)
    # Peak of what fastjac allocates: J, plus per chunk the stack, f's output,
    # its (S, b, m) copy and the combined differences.
    info.peak_bytes = result_bytes + b * (S * n * np.dtype(ev.stack_dtype).itemsize
                                          + (2 * S + len(combos)) * m * dtype.itemsize)
    blocks = CoordinateBlocks(h, b)
    ev.strategy, first_F = choose_strategy(ev, vectorized, next(iter(blocks)), eps)
    fx_flat = fx.reshape(m).astype(dtype)
    if ev.strategy != "vectorized":
        # Point-by-point paths hold no stack, only f's outputs (S, b, m): larger
        # blocks cut the per-block overhead (1 MiB of outputs, cache-sized).
        b = max(b, min(n, (4 * DEFAULT_CHUNK_BYTES) // max(1, S * m * dtype.itemsize)))
        if max_memory is not None:
            b = max(1, min(b, max_memory // max(1, S * m * dtype.itemsize)))
        blocks = CoordinateBlocks(h, b)
    if ev.strategy == "vectorized" and executor is None and len(blocks) >= MIN_BLOCKS_TO_TUNE:
        # Long in-process run: let the chunk size be tuned on the first blocks
        # (see _chunking); the probe's block is still the first one.
        itemsize = np.dtype(ev.stack_dtype).itemsize
        largest = _block_size(S, n, m, itemsize, max_memory, TRIAL_FACTORS[-1] * DEFAULT_CHUNK_BYTES)
        tuned = TunedBlocks(h, b, largest, f, (n, m, np.dtype(ev.stack_dtype).str, S))
        if tuned.factor not in (None, 1):
            first_F = None  # a remembered larger size: the probe's block is not the first
        blocks = tuned

    def scatter(block, D):
        cols = block.cols
        sl = slice(int(cols[0]), int(cols[-1]) + 1)  # coordinate blocks are contiguous
        inv = (1.0 / block.steps).astype(dtype)[:, None]
        for e in range(len(JT)):
            np.multiply(D[e], inv, out=JT[e][sl])

    ncalls = _evaluate_blocks(ev, blocks, first_F, combos, fx_flat, scatter, executor, progress)
    info.strategy = ev.strategy
    info.nfev += S * n
    info.ncalls += ncalls if ev.strategy == "vectorized" else S * n
    info.nblocks = ncalls  # blocks actually evaluated (a tuned run decides as it goes)
    info.block_size = b * (getattr(blocks, "factor", 1) or 1)
    info.seconds = time.perf_counter() - t_start
    return _assemble(JT, out_shape, x_shape, info)


def _assemble(JT, out_shape, x_shape, info):
    # J is stored transposed, (n, m), so each block writes contiguous rows;
    # the transpose below is a view, so there is no extra pass over J.
    Js = [jt.T.reshape(out_shape + x_shape) for jt in JT]
    info.extra = Js[1:]
    return Js[0], info


def jacobian(f, x, *, method="central", order=None, step=None, vectorized="auto",
             max_memory=None, executor=None, progress="auto", sparsity=None, output="dense"):
    """Numeric Jacobian of ``f`` at ``x`` from batched finite differences.

    Parameters
    ----------
    f : callable
        ``f(x)`` returns a scalar or an array of any shape.  With
        ``vectorized=True`` it must also map a batch ``(k, *x.shape)`` to
        ``(k, *f(x).shape)``.  ``f`` receives read-only arrays.
    x : array_like
        The point: a scalar, nested list or array of any shape.  Never
        modified.  Integers and booleans are computed in float64; float32
        stays float32.
    method : {'central', 'forward', 'backward', 'complex'}, optional
        The stencil family (see ``fastjac.stencils.STENCILS``).  ``'complex'``
        is the complex step ``Im f(x + ih) / h``, exact to rounding for
        functions that are analytic and written to accept complex input.
    order : int, optional
        Truncation order: 2, 4 or 6 for central; 1 or 2 for one-sided.
        Default: the method's natural order (2 for central and complex,
        1 for forward and backward).
    step : float or array_like, optional
        Absolute step, a scalar or one per element of ``x``.  Default:
        ``EPS**(1/(p+1)) * max(1, |x_j|)`` for a stencil of order ``p``, with
        EPS from the less precise of x and f(x).
    vectorized : {'auto', True, False}, optional
        Whether ``f`` takes a leading batch axis.  ``'auto'`` probes once,
        verifies a few rows against single calls and remembers the answer
        per function; a function that broadcasts but mixes rows (such as a
        softmax over axis 0) falls back to one call per point.
    max_memory : int, optional
        Upper bound in bytes of any one chunk (stack plus f's output).
    executor : concurrent.futures.Executor, optional
        Evaluate chunks as independent tasks: a ``ThreadPoolExecutor``, a
        ``ProcessPoolExecutor``, or a ``dask.distributed.Client`` (or
        ``client.get_executor()``).  Process and cluster executors need a
        picklable ``f`` (dask uses cloudpickle, so lambdas work there).
        See ``docs/scale.md`` for Numba ``parallel=True`` safety.
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
        Unknown method/order, non-finite x, a shape that changes between calls.
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
    J, _ = jacobian_with_info(f, x, method=method, order=order, step=step,
                              vectorized=vectorized, max_memory=max_memory,
                              executor=executor, progress=progress, sparsity=sparsity,
                              output=output)
    return J


def gradient(f, x, **options):
    """Gradient of a scalar-valued ``f``, shaped like ``x``.

    Takes the same keyword options as :func:`jacobian`.

    Examples
    --------
    >>> import numpy as np, fastjac
    >>> g = fastjac.gradient(lambda v: np.sum(v ** 2), np.array([1.0, -2.0]))
    >>> np.allclose(g, [2.0, -4.0])
    True
    """
    J, info = jacobian_with_info(f, x, **options)
    if info.fx.size != 1:
        raise ValueError(
            f"`f` must return a scalar for gradient(); f(x) has shape {info.fx.shape}. "
            "Use fastjac.jacobian for vector-valued functions.")
    lead = info.fx.ndim  # drop f's size-1 axes: the gradient is shaped like x

    def squeeze(a):
        return a.reshape(a.shape[lead:])

    if isinstance(J, tuple):
        return tuple(squeeze(a) for a in J)
    if isinstance(J, dict):
        return {k: squeeze(a) for k, a in J.items()}
    return squeeze(J)


def jvp(f, x, v, *, method="central", order=None, step=None, vectorized="auto"):
    """Directional derivative ``J(x) @ v`` from 2 evaluations (central).

    Parameters
    ----------
    f : callable
    x : array_like
    v : array_like, shape x.shape or (k, *x.shape)
        One tangent, or ``k`` tangents evaluated in one batched stack.
    method, order, vectorized :
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
    jv, _ = jvp_with_info(f, x, v, method=method, order=order, step=step, vectorized=vectorized)
    return jv


def jvp_with_info(f, x, v, *, method="central", order=None, step=None, vectorized="auto"):
    """:func:`jvp` plus its :class:`JacobianInfo` (``step`` holds ``t`` per direction)."""
    _check_callable(f)
    if is_multi(x):
        flat, spec = pack(x)
        vflat, _ = pack_like(spec, v)
        return jvp_with_info(spec.wrap(f), flat, vflat, method=method, order=order,
                             step=step, vectorized=vectorized)
    stencil = get_stencil(method, order)
    _check_options(vectorized, None)
    x0 = as_point(x)
    x_shape = x0.shape
    V = as_point(v, "v")
    single = V.shape == x_shape
    if not single and V.shape[1:] != x_shape:
        raise ValueError(
            f"`v` must have the shape of x {x_shape} or (k, *x.shape); got {V.shape}.")
    x0 = x0.reshape(-1)
    V = V.reshape(-1 if single else V.shape[0], x0.size).astype(x0.dtype)
    if single:
        V = V.reshape(1, -1)
    fx = _evaluate_f0(f, x0, x_shape)
    eps = eps_for(x0.dtype, fx.dtype)
    dtype = _result_dtype(x0, fx)
    vmax = np.max(np.abs(V), axis=1) if V.size else np.zeros(V.shape[0])
    if step is None:
        scale = max(1.0, float(np.max(np.abs(x0), initial=0.0)))
        from .steps import relative_step

        t = relative_step(stencil, eps) * scale / np.where(vmax > 0, vmax, 1.0)
    else:
        _check_step(step, np.empty(()))
        t = np.full(V.shape[0], float(step))
    t = t.astype(x0.dtype)
    ev = Evaluator(f, x0, x_shape, fx.shape, stencil, dtype)
    block = DenseDirections(V * t[:, None], np.arange(V.shape[0]))
    info = JacobianInfo(fx=fx, stencil=stencil, step=t, eps=eps, strategy="none", nfev=1, ncalls=1)
    out = np.zeros((V.shape[0], fx.size), dtype=dtype)
    if V.shape[0] and fx.size and x0.size:
        ev.strategy, first_F = choose_strategy(ev, vectorized, block, eps)
        F = first_F if first_F is not None else ev.evaluate(block)
        D = _combine(F, fx.reshape(-1).astype(dtype), stencil, [stencil.weights])[0]
        out = D / t[:, None].astype(dtype)
        out[vmax == 0] = 0.0
        info.strategy = ev.strategy
        info.nfev += F.shape[0] * F.shape[1]
        info.ncalls += 1 if ev.strategy == "vectorized" else F.shape[0] * F.shape[1]
    out = out.reshape((V.shape[0],) + fx.shape)
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
