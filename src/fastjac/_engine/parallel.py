"""Evaluating blocks on an executor: threads, processes or a dask cluster.

Any object with a ``concurrent.futures``-style ``submit`` works, which covers
``ThreadPoolExecutor``, ``ProcessPoolExecutor`` and ``dask.distributed.Client``
(and ``client.get_executor()``).  Blocks are independent tasks; results are
assembled in submission order, so the Jacobian does not depend on which
worker finished first.

Numba ``parallel=True`` code inside ``f`` needs care (see ``docs/scale.md``):

- the ``workqueue`` threading layer aborts the process when two threads
  enter parallel code at once, so :func:`run_block` serialises ``f`` with a
  per-process lock whenever the layer of the process running the task is
  (or will be) ``workqueue``; ``omp`` and ``tbb`` run concurrently;
- GNU OpenMP (the ``omp`` layer) cannot survive ``fork()`` once its threads
  exist: forked children die or hang on their first parallel region.  When
  this process has launched the ``omp`` layer and the executor is a
  ``ProcessPoolExecutor`` whose workers would be forked now, the blocks go
  to a temporary ``spawn`` pool of the same size instead.
"""
from __future__ import annotations

from contextlib import contextmanager

import collections
import functools
import logging
import pickle
import sys
import threading
from dataclasses import dataclass

import numpy as np

from .._validate import describe
from .combine import combine

__all__ = ["map_blocks", "run_block", "BlockJob", "numba_threading_layer", "loopback_cluster",
           "is_thread_like", "layer_loadable"]

_log = logging.getLogger("fastjac")

# One lock per process: the scope of a Numba threading layer.
_SERIAL = threading.Lock()

# Layers Numba would try, per NUMBA_THREADING_LAYER (numba.np.ufunc.parallel).
_LAYER_CANDIDATES = {
    "safe": ("tbb",),
    "threadsafe": ("tbb", "omp"),
    "forksafe": ("tbb", "omp", "workqueue"),
}


@functools.lru_cache(maxsize=None)
def layer_loadable(layer) -> bool:
    # Cached: a failed import is retried (with a file-system search) every time.
    try:
        if layer == "tbb":
            from numba.np.ufunc import parallel as npp

            npp._check_tbb_version_compatible()
            from numba.np.ufunc import tbbpool  # noqa: F401
        elif layer == "omp":
            from numba.np.ufunc import omppool  # noqa: F401
        return True
    except Exception:
        return False


def numba_threading_layer():
    """``(layer, launched)`` for this process.

    ``layer`` is the Numba threading layer in use, or the one Numba would
    pick on its first parallel region (``None`` if Numba is not imported,
    ``"unknown"`` if it cannot be told); ``launched`` says whether its
    threads already exist.  Never launches them itself.
    """
    numba = sys.modules.get("numba")
    if numba is None:
        return None, False
    try:
        from numba.np.ufunc import parallel as npp

        if npp._is_initialized:
            return str(numba.threading_layer()), True
        chosen = str(numba.config.THREADING_LAYER).lower()
        if chosen in ("tbb", "omp", "workqueue"):
            return chosen, False
        order = _LAYER_CANDIDATES.get(chosen, tuple(numba.config.THREADING_LAYER_PRIORITY))
        for layer in order:
            if layer_loadable(layer):
                return layer, False
    except Exception:
        pass
    return "unknown", False


@dataclass(frozen=True)
class BlockJob:
    """What every task of one run shares: the task, the offsets and the
    combination weights.  Sent to a worker once (dask scatters it)."""

    task: object
    offsets: tuple
    weights: np.ndarray
    centers: tuple
    fx_flat: np.ndarray


def run_block(job, block):
    """Evaluate and combine one block; the task every executor runs (module-level: picklable).

    Returns a *fresh* array: a task may not hand back a buffer its thread
    reuses (the stack, the loop's outputs, or f's own output buffer), because
    with several tasks in flight per thread the next one would overwrite it
    before the caller has read it.  Serialised per process under Numba's
    ``workqueue`` layer, which aborts on concurrent entry from several threads.
    """
    layer, _ = numba_threading_layer()
    if layer in ("workqueue", "unknown"):
        with _SERIAL:
            return _evaluate_fresh(job, block)
    return _evaluate_fresh(job, block)


def _evaluate_fresh(job, block):
    F, _ = job.task.evaluate(block, job.offsets)
    return combine(F, job.weights, job.centers, job.fx_flat, fresh=True)


def _module(executor) -> str:
    return type(executor).__module__ or ""


def _is_dask(executor) -> bool:
    return _module(executor).startswith(("distributed", "dask"))


def _is_process_like(executor) -> bool:
    return "Process" in type(executor).__name__ or _is_dask(executor)


def is_thread_like(executor) -> bool:
    """Tasks run in threads of this process (they share f and its buffers)."""
    return not _is_process_like(executor)


def _check_picklable(ev, executor):
    """Fail early, with a way out, when ``f`` cannot travel to the executor.

    A ``ProcessPoolExecutor`` uses the standard library's pickle (lambdas,
    closures and functions defined inside functions fail); dask uses
    cloudpickle, which handles those but not, e.g., open files or locks.
    """
    if not _is_process_like(executor):
        return
    if _is_dask(executor):
        import cloudpickle

        dumps, how = cloudpickle.dumps, "cloudpickle (used by dask)"
        advice = ("remove the unpicklable state from f (open files, locks, sockets), or use "
                  "a concurrent.futures.ThreadPoolExecutor.")
    else:
        dumps, how = pickle.dumps, "the standard library's pickle"
        advice = ("use a concurrent.futures.ThreadPoolExecutor, define f as a module-level "
                  "function (lambdas and closures do not pickle with pickle), or use a "
                  "dask.distributed Client, whose cloudpickle handles lambdas.")
    try:
        dumps(ev.task.f)
    except Exception as exc:
        raise TypeError(
            f"`f` cannot be pickled with {how}, so it cannot be sent to a "
            f"{type(executor).__name__} ({type(exc).__name__}: {exc}). To fix it, "
            f"{advice}") from None


def _forks_now(executor) -> bool:
    """Would this ``ProcessPoolExecutor`` fork new workers from this process?"""
    ctx = getattr(executor, "_mp_context", None)
    if ctx is None or "Process" not in type(executor).__name__:
        return False
    try:
        method = ctx.get_start_method()
    except Exception:
        return False
    # Workers that already exist were forked earlier, possibly before the
    # OpenMP threads existed; only a pool with no workers yet is known to fork now.
    return method == "fork" and not getattr(executor, "_processes", None)


def _safe_executor(executor):
    """``(executor_to_use, owned)``: swap a fork pool for spawn under a live GNU OpenMP."""
    layer, launched = numba_threading_layer()
    if not (launched and layer in ("omp", "unknown") and _forks_now(executor)):
        return executor, False
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    _log.info("fastjac: Numba's OpenMP threads exist in this process and forked workers "
              "would crash; evaluating on a temporary 'spawn' process pool instead.")
    workers = getattr(executor, "_max_workers", None)
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")), True


def _window(executor) -> int:
    # Futures in flight: enough to keep every worker busy, few enough that
    # finished chunks waiting for an earlier one stay within the memory budget.
    workers = getattr(executor, "_max_workers", None)
    if workers is None and _is_dask(executor):
        try:
            client = getattr(executor, "_client", executor)
            workers = sum(client.nthreads().values())
        except Exception:
            workers = None
    return 2 * int(workers) if workers else 16


def _explain(exc, executor):
    from concurrent.futures.process import BrokenProcessPool

    if isinstance(exc, BrokenProcessPool):
        raise RuntimeError(
            f"a worker of the {type(executor).__name__} died while evaluating f "
            f"({exc}). If f runs Numba parallel=True code under the 'omp' threading "
            "layer, a forked worker crashes once OpenMP threads exist in the parent: create "
            "the pool with mp_context=multiprocessing.get_context('spawn'), or use a "
            "ThreadPoolExecutor.") from exc
    if isinstance(exc, AttributeError) and "__main__" in str(exc):
        raise RuntimeError(
            f"a worker could not load f ({exc}): with the 'spawn' start method f must be "
            "importable, i.e. defined at module level in a module or in a script guarded "
            "by `if __name__ == '__main__':`. Use a ThreadPoolExecutor otherwise.") from exc
    raise exc


def map_blocks(executor, job, blocks):
    """Yield ``(block, D)`` in order, evaluating blocks as executor tasks.

    At most a bounded window of tasks is in flight; each returns its own
    combined differences ``D`` (see :func:`run_block`).
    """
    _check_picklable(job, executor)
    pool, owned = _safe_executor(executor)
    payload = job
    if _is_dask(pool) and hasattr(pool, "scatter"):
        # Ship x0 and f to every worker once instead of once per task.
        payload = pool.scatter(job, broadcast=True, hash=False)
    window = _window(pool)
    pending = collections.deque()
    todo = iter(blocks)
    try:
        while True:
            while len(pending) < window:
                block = next(todo, None)
                if block is None:
                    break
                fut = pool.submit(run_block, payload, block)
                if not callable(getattr(fut, "result", None)):
                    raise TypeError(
                        "`executor.submit` must return a future (an object with a result() "
                        f"method), as concurrent.futures and dask do; got {describe(fut)}.")
                pending.append((block, fut))
            if not pending:
                return
            block, fut = pending.popleft()
            try:
                D = fut.result()
            except Exception as exc:
                _explain(exc, pool)
            yield block, D
    finally:
        for _, fut in pending:
            cancel = getattr(fut, "cancel", None)
            if callable(cancel):
                cancel()
        if owned:
            pool.shutdown(wait=True)


@contextmanager
def loopback_cluster(n_workers: int = 2):
    """A private dask ``LocalCluster`` on 127.0.0.1 and its ``Client`` (tests, benchmarks).

    The dashboard gets a port the OS reports free: dask's default, 8787, may
    be taken (another cluster, a second test run on the machine), and dask's
    fallback for a taken port leaks a socket.
    """
    import socket

    import distributed

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cluster = distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                       host="127.0.0.1", dashboard_address=f"127.0.0.1:{port}")
    client = distributed.Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()
