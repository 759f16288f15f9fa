"""The engine's internal API: one pipeline behind every public entry point.

Reading order, bottom up:

- :mod:`.directions`: blocks of perturbation directions and their sources;
- :mod:`.buffers`: per-thread stacks in the leading and trailing layouts;
- :mod:`.strategies`: how ``f`` is called on a block (a table of records);
- :mod:`.probe`: which strategy ``vectorized="auto"`` picks, verified;
- :mod:`.combine`: stencil weights applied to a block's values;
- :mod:`.parallel`: blocks as executor tasks (threads, processes, dask);
- :mod:`.chunking`, :mod:`.memory`: block sizes, by measurement and budget;
- :mod:`.plan`: :func:`prepare`, the cached :class:`Plan` bound to a point;
- :mod:`.pipeline`: :func:`run`, evaluate -> combine -> scatter.

Sibling modules use the names re-exported here and nothing else.
"""
from .combine import combine, split_weights
from .fastpath import lookup as fast_lookup, remember as fast_remember
from .directions import (CoordinateBlocks, DenseDirections, SparseDirections, coordinate_block,
                         coordinate_source, dense_source)
from .info import JacobianInfo
from .memory import DEFAULT_CHUNK_BYTES, available_memory, block_size, chunk_policy, guard_result
from .parallel import loopback_cluster, numba_threading_layer
from .pipeline import RunStats, dense_jacobian, make_info, offsets_of, run, values
from .plan import Plan, Prepared, check_callable, check_executor, check_step, prepare
from .buffers import readonly, stack_buffer
from .strategies import STRATEGIES, as_output

__all__ = [
    "combine", "split_weights", "CoordinateBlocks", "DenseDirections", "SparseDirections",
    "coordinate_block", "coordinate_source", "dense_source", "JacobianInfo",
    "DEFAULT_CHUNK_BYTES", "available_memory", "block_size", "guard_result", "loopback_cluster",
    "numba_threading_layer", "RunStats", "dense_jacobian", "make_info", "offsets_of", "run",
    "values", "Plan", "Prepared", "check_callable", "check_executor", "check_step", "prepare",
    "readonly", "stack_buffer", "STRATEGIES", "as_output", "fast_lookup", "fast_remember", "chunk_policy",
]
