"""The one pipeline: blocks -> strategy -> evaluate -> combine -> scatter.

Every public entry point (``jacobian``, ``jvp``, ``vjp``, ``sampled_jacobian``,
structured ``sparsity=`` runs, the checks and the monitor) describes its
directions as a *source* of blocks and hands :func:`run` a ``scatter``
function that consumes each block's combined differences.  :func:`run`
decides the strategy on the first block (the probe), sizes the blocks for
it, evaluates them in process or on an executor, and counts every point
``f`` sees.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np

from .chunking import MIN_BLOCKS_TO_TUNE, TRIAL_FACTORS, TunedBlocks
from .combine import combine, split_weights
from .directions import coordinate_source
from .info import JacobianInfo
from .memory import block_size, chunk_bytes, guard_result, point_block_size, tuning
from .parallel import BlockJob, is_thread_like, map_blocks
from .plan import Prepared, remember_decision
from .probe import FORCED, fallback_strategy, probe, verify_points
from .strategies import POINTWISE_ROW_BYTES, STRATEGIES, BatchShapeError, call_single

__all__ = ["run", "RunStats", "values", "dense_jacobian", "make_info", "offsets_of",
           "progress_bar"]


@dataclass
class RunStats:
    nblocks: int = 0
    block_size: int = 0
    center: np.ndarray | None = None   # f(x0) from the first block, when asked for
    settled: bool = True               # later runs use blocks of block_size directions
    seconds: float = 0.0


def offsets_of(prep: Prepared, offsets=None):
    """The offsets to evaluate (imaginary for the complex step), zero excluded."""
    offs = prep.stencil.offsets if offsets is None else offsets
    offs = tuple(c for c in offs if c != 0)
    return tuple(1j * c for c in offs) if prep.stencil.complex_step else offs


def _decide(prep, block, offsets, center):
    """Resolve the strategy on the first block; returns the probe's (F, fc) or None."""
    task, plan, vectorized = prep.task, prep.plan, prep.vectorized
    if vectorized in FORCED:
        plan.strategy = task.strategy = FORCED[vectorized]
        return None
    if vectorized is False:
        plan.strategy = task.strategy = fallback_strategy(prep.f, prep.x_shape,
                                                          prep.stencil.complex_step)
        return None
    decision = probe(task, block, offsets, prep.eps, center)
    prep.nfev += decision.points
    prep.ncalls += decision.calls
    plan.strategy, plan.reasons = decision.strategy, tuple(decision.reasons)
    if decision.first is not None:
        plan.verified.add(len(offsets) * block.size + bool(center))
    remember_decision(prep.f, prep.key, plan)
    return decision.first


def _verify(prep, block, offsets, F, center):
    """One point of a batch of a size not yet verified, against a single call."""
    rows = len(offsets) * block.size + bool(center)
    plan = prep.plan
    if rows in plan.verified and not plan.verify:
        return True
    S, b = len(offsets), block.size
    ok, why, calls = verify_points(prep.task, block, offsets, F, [(S // 2, b // 2)], prep.eps)
    prep.nfev += calls
    prep.ncalls += calls
    if ok:
        plan.verified.add(rows)
        plan.verify = False
        return True
    plan.reasons = plan.reasons + (f"a batch of {rows} points: {why}",)
    plan.strategy = prep.task.strategy = fallback_strategy(prep.f, prep.x_shape,
                                                           prep.stencil.complex_step)
    plan.verified.clear()
    remember_decision(prep.f, prep.key, plan)
    return False


def _evaluate(prep, block, offsets, center):
    """Evaluate one block in process with the plan's strategy (verifying new batch sizes)."""
    task = prep.task
    rows = len(offsets) * block.size + bool(center)
    try:
        F, fc = task.evaluate(block, offsets, center)
    except BatchShapeError:
        if prep.vectorized in FORCED:
            raise
        # The plan said f batches, and now it does not (its behaviour changed):
        # decide again on this block.
        prep.nfev += rows
        prep.ncalls += 1
        prep.plan.strategy = None
        first = _decide(prep, block, offsets, center)
        if first is not None:
            return first
        return _evaluate(prep, block, offsets, center)
    if task.batches:
        prep.ncalls += 1
        if prep.vectorized == "auto" and not _verify(prep, block, offsets, F, center):
            prep.nfev += rows  # the rejected batch was evaluated too
            return _evaluate(prep, block, offsets, center)
    else:
        prep.ncalls += rows
    prep.nfev += rows
    return F, fc


def progress_bar(progress, nblocks, first_seconds):
    """tqdm over blocks: always for True, for "auto" only if slow and on a terminal."""
    if not progress or nblocks <= 1:
        return None
    if progress == "auto":
        slow = first_seconds * nblocks > 2.0
        if not (slow and hasattr(sys.stderr, "isatty") and sys.stderr.isatty()):
            return None
    from tqdm.auto import tqdm

    return tqdm(total=nblocks, initial=1, unit="chunk", desc="fastjac", leave=False)


def _blocks(prep, source, count, S, tune):
    """The blocks of a run for the plan's strategy (or for the probe, if undecided)."""
    n, m = prep.n, prep.m
    itemsize = np.dtype(prep.task.stack_dtype).itemsize
    b = block_size(S, n, m, itemsize, prep.max_memory)
    strategy = prep.plan.strategy
    pointwise = strategy is not None and (not STRATEGIES[strategy].batched
                                          or n * itemsize >= POINTWISE_ROW_BYTES)
    if pointwise:
        bp = point_block_size(S, count, m, prep.dtype.itemsize, prep.max_memory, b)
        return source(bp), bp
    if tune is not None and tuning() and prep.executor is None and count >= MIN_BLOCKS_TO_TUNE * b:
        # Long in-process run: the chunk size is tuned on the first blocks.
        largest = block_size(S, n, m, itemsize, prep.max_memory,
                             TRIAL_FACTORS[-1] * chunk_bytes())
        tuned = TunedBlocks(tune, b, largest, prep.f,
                            (n, m, np.dtype(prep.task.stack_dtype).str, S))
        return tuned, b
    return source(b), b


def run(prep: Prepared, source, scatter, *, count, offsets=None, combos=None, center=False,
        tune=None) -> RunStats:
    """Evaluate every block of ``source``, combine it, hand ``(block, D)`` to ``scatter``.

    Parameters
    ----------
    source : callable
        ``source(b)`` -> sized iterable of blocks of at most ``b`` directions.
    scatter : callable
        ``scatter(block, D)`` with ``D`` of shape ``(E, b, m)``: one estimate
        per weight vector in ``combos``.  ``D`` may live in a scratch buffer:
        consume it before returning.
    count : int
        Directions in the source (for sizing and progress).
    offsets, combos :
        Offsets (zero allowed: it is served by ``f(x)``) and weight vectors
        over them; default the stencil's.
    center : bool
        Also evaluate ``f(x0)`` with the first block (a determinism guard).
    tune : ndarray, optional
        The steps of a dense coordinate run: lets the chunk size be tuned.
    """
    offs_full = prep.stencil.offsets if offsets is None else tuple(offsets)
    combos = [prep.stencil.weights] if combos is None else combos
    W, centers = split_weights(offs_full, combos)
    offs = offsets_of(prep, offs_full)
    S = len(offs)
    fx_flat = prep.fx.reshape(-1).astype(prep.dtype)
    stats = RunStats()
    if count == 0 or prep.m == 0 or prep.n == 0:
        return stats
    blocks, b = _blocks(prep, source, count, S, tune)
    it = iter(blocks)
    first = None
    if prep.plan.strategy is None:
        block0 = next(it)
        got = _decide(prep, block0, offs, center)
        if got is not None:
            first = (block0, got)
        else:  # decided without a batch to keep: lay the run out for that strategy
            blocks, b = _blocks(prep, source, count, S, tune)
            it = iter(blocks)
    else:
        prep.task.strategy = prep.plan.strategy
    stats.block_size = b
    if prep.executor is not None and is_thread_like(prep.executor) and prep.plan.serialize is None:
        _learn_serialize(prep)
    prep.task.serialize = bool(prep.plan.serialize)
    t0 = time.perf_counter()
    bar, k = None, 0

    def consume(block, D):
        nonlocal bar, k
        scatter(block, D)
        k += 1
        if k == 1:
            bar = progress_bar(prep.progress, len(blocks), time.perf_counter() - t0)
        elif bar is not None:
            bar.update(1)

    try:
        if first is None and center:
            block0 = next(it, None)
            if block0 is not None:
                first = (block0, _evaluate(prep, block0, offs, True))
        if first is not None:
            block0, (F, fc) = first
            stats.center = None if fc is None else np.array(fc, copy=True)
            consume(block0, combine(F, W, centers, fx_flat))
        if prep.executor is None:
            for block in it:
                F, _ = _evaluate(prep, block, offs, False)
                consume(block, combine(F, W, centers, fx_flat))
        else:
            _run_on_executor(prep, it, offs, W, centers, fx_flat, consume)
    finally:
        if bar is not None:
            bar.close()
    prep.nfev += prep.task.extra
    prep.task.extra = 0
    prep.plan.writable = prep.task.writable
    stats.nblocks = k
    stats.seconds = time.perf_counter() - t0
    if isinstance(blocks, TunedBlocks):
        stats.block_size = b * (blocks.factor or 1)
        stats.settled = blocks.complete or not blocks.plan
    return stats


def _run_on_executor(prep, it, offs, W, centers, fx_flat, consume):
    """Blocks as executor tasks; the last, partial block in process (its batch
    size may be new and must be verified against single calls first)."""
    rest = list(it)
    if not rest:
        return
    tail = []
    batched = prep.task.batches
    if batched and rest[-1].size != rest[0].size:
        tail = [rest.pop()]
    if batched and rest and prep.vectorized == "auto":
        rows = len(offs) * rest[0].size
        if rows not in prep.plan.verified or prep.plan.verify:
            head = rest.pop(0)
            F, _ = _evaluate(prep, head, offs, False)  # verifies this batch size
            consume(head, combine(F, W, centers, fx_flat))
    job = BlockJob(prep.task, offs, W, centers, fx_flat)
    per_block = 1 if prep.task.batches else None
    for block, D in map_blocks(prep.executor, job, rest):
        prep.nfev += len(offs) * block.size
        prep.ncalls += per_block or len(offs) * block.size
        consume(block, D)
    for block in tail:
        F, _ = _evaluate(prep, block, offs, False)
        consume(block, combine(F, W, centers, fx_flat))


def _learn_serialize(prep):
    """Does f hand back the same buffer on every call?  Threads must then take turns."""
    if prep.y0 is None:
        y0 = call_single(prep.task, prep.x0.reshape(prep.x_shape))
        prep.nfev += 1
        prep.ncalls += 1
    else:
        y0 = prep.y0
    y1 = call_single(prep.task, prep.x0.reshape(prep.x_shape))
    prep.nfev += 1
    prep.ncalls += 1
    prep.plan.serialize = bool(isinstance(y0, np.ndarray) and isinstance(y1, np.ndarray)
                               and np.shares_memory(y0, y1))


def values(prep: Prepared, block, offsets) -> np.ndarray:
    """``F[s, i] = f(x0 + offsets[s] d_i)`` for one block, zero offsets included, as a copy."""
    task = prep.task
    if prep.plan.strategy is None:
        task.strategy = fallback_strategy(prep.f, prep.x_shape, prep.stencil.complex_step)
    else:
        task.strategy = prep.plan.strategy
    offs = tuple(offsets)
    F, _ = _evaluate(prep, block, offs, False)
    return np.array(F, copy=True)


def dense_jacobian(prep: Prepared, h, combos=None, tune=True, center=False):
    """Every estimate of ``J`` over all coordinates, stored transposed ``(n, m)``
    so that each block writes contiguous rows; returns ``(JT list, stats)``
    (``stats.center`` is ``f(x)`` from the first batch when ``center``)."""
    combos = [prep.stencil.weights] if combos is None else combos
    n, m, dtype = prep.n, prep.m, prep.dtype
    guard_result(len(combos) * n * m * dtype.itemsize, prep.out_shape + prep.x_shape)
    JT = [np.empty((n, m), dtype=dtype) for _ in combos]
    inv_h = (1.0 / h).astype(dtype)

    def scatter(block, D):
        lo = int(block.cols[0])
        sl = slice(lo, lo + block.size)  # coordinate blocks are contiguous
        inv = inv_h[sl, None]
        for e in range(len(JT)):
            np.multiply(D[e], inv, out=JT[e][sl])

    stats = run(prep, coordinate_source(h), scatter, count=n, combos=combos,
                tune=h if tune else None, center=center)
    return JT, stats


def make_info(prep: Prepared, step, stats: RunStats | None = None, t_start=None) -> JacobianInfo:
    info = JacobianInfo(fx=prep.fx, stencil=prep.stencil, step=step, eps=prep.eps,
                        strategy=prep.plan.strategy or "none", nfev=prep.nfev,
                        ncalls=prep.ncalls, fallback=prep.fallback, notes=prep.notes())
    if stats is not None:
        info.nblocks, info.block_size = stats.nblocks, stats.block_size
    if t_start is not None:
        info.seconds = time.perf_counter() - t_start
    return info
