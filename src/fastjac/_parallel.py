"""Evaluating blocks on an executor: threads, processes or a dask cluster.

Any object with a ``concurrent.futures``-style ``submit`` works, which covers
``ThreadPoolExecutor``, ``ProcessPoolExecutor`` and ``dask.distributed.Client``
(and ``client.get_executor()``).  Blocks are independent tasks; results are
assembled in submission order, so the Jacobian does not depend on which
worker finished first.
"""
from __future__ import annotations

import pickle

__all__ = ["map_blocks"]


def _is_process_like(executor) -> bool:
    name = type(executor).__name__
    module = type(executor).__module__
    return "Process" in name or module.startswith(("distributed", "dask"))


def _check_picklable(ev, executor):
    if not _is_process_like(executor):
        return
    try:
        pickle.dumps(ev.f)
    except Exception as exc:
        raise TypeError(
            f"`f` cannot be pickled, so it cannot be sent to a {type(executor).__name__} "
            f"({type(exc).__name__}: {exc}). Use a concurrent.futures.ThreadPoolExecutor, "
            "or define f as a module-level function (lambdas and closures do not pickle "
            "with the standard library's pickle).") from None


def map_blocks(executor, ev, blocks, first_F=None):
    """Yield ``(block, F)`` in order, evaluating blocks as executor tasks."""
    from .engine import _run_block

    _check_picklable(ev, executor)
    futures = []
    for k, block in enumerate(blocks):
        if k == 0 and first_F is not None:
            futures.append(None)
        else:
            futures.append(executor.submit(_run_block, ev, block))
    for k, (block, fut) in enumerate(zip(blocks, futures)):
        yield block, (first_F if fut is None else fut.result())
