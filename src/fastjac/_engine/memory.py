"""Memory: how large a block may be, and whether a result can fit at all."""
from __future__ import annotations

import os
from contextlib import contextmanager

__all__ = ["DEFAULT_CHUNK_BYTES", "available_memory", "guard_result", "block_size",
           "point_block_size", "gib", "chunk_policy", "chunk_bytes", "tuning", "policy_key"]

#: Bytes of one chunk (perturbation stack plus f's output for it) to start
#: from.  ``benchmarks/bench_chunking.py`` found no single best size (64 KiB
#: to the whole stack).  256 KiB keeps an elementwise f's temporaries (half
#: the chunk each) under glibc's 128 KiB mmap threshold, so they are reused
#: from the heap instead of being mapped and page-faulted on every call; long
#: runs tune upwards from it by measurement (``.chunking``), to at most 4 MiB.
DEFAULT_CHUNK_BYTES = 1 << 18

_POLICY = {"bytes": None, "tune": True}


@contextmanager
def chunk_policy(nbytes=None, tune=True):
    """Within the block: chunks of ``nbytes`` (default :data:`DEFAULT_CHUNK_BYTES`),
    tuned by measurement or not.  For benchmarks that compare fixed sizes."""
    saved = dict(_POLICY)
    _POLICY.update(bytes=nbytes, tune=tune)
    try:
        yield
    finally:
        _POLICY.update(saved)


def policy_key() -> tuple:
    """The chunk policy in force, for keys of what was laid out under it (a
    fast path's blocks are the policy's; another policy must not be served them)."""
    return _POLICY["bytes"], bool(_POLICY["tune"])


def chunk_bytes() -> int:
    return _POLICY["bytes"] or DEFAULT_CHUNK_BYTES


def tuning() -> bool:
    return bool(_POLICY["tune"])


# Reading /proc/meminfo costs ~30 us, so only results above this are checked.
_LARGE_RESULT = 256 << 20


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


def gib(nbytes) -> str:
    return f"{nbytes / 2**30:.2f} GiB"


def guard_result(result_bytes, j_shape, structured=False) -> None:
    """Raise before allocating when the result cannot fit in available memory."""
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
        f"the Jacobian of shape {tuple(j_shape)} needs {gib(result_bytes)} but only "
        f"{gib(avail)} is available. {hint}")


def block_size(S, n, m, itemsize, max_memory, chunk_bytes=None) -> int:
    """Directions per batched block: the stack (``S`` points per direction) plus f's output."""
    per_direction = S * (n + m) * itemsize
    nbytes = (_POLICY["bytes"] or DEFAULT_CHUNK_BYTES) if chunk_bytes is None else chunk_bytes
    budget = nbytes if max_memory is None else min(max_memory, nbytes)
    if max_memory is not None and per_direction > max_memory:
        raise MemoryError(
            f"`max_memory`={max_memory} bytes is smaller than the stack of one direction "
            f"({per_direction} bytes: {S} points x (n={n} inputs + m={m} outputs) x "
            f"{itemsize} bytes); raise max_memory or use jvp/sampled_jacobian.")
    return max(1, budget // per_direction)


def point_block_size(S, count, m, itemsize, max_memory, batched) -> int:
    """Directions per block when ``f`` is called point by point.

    Such paths hold no stack, only f's outputs ``(S, b, m)``: larger blocks
    cut the per-block overhead (1 MiB of outputs, cache-sized).
    """
    b = max(batched, min(count, (4 * chunk_bytes()) // max(1, S * m * itemsize)))
    if max_memory is not None:
        b = max(1, min(b, max_memory // max(1, S * m * itemsize)))
    return max(1, b)
