"""Where the chunking policy comes from: the engine at fixed chunk sizes, and tuned.

Group ``chunking|{workload}|n={n}``; the id is the chunk size in KiB with the
tuner off (``whole`` = the entire ±h stack in one call), or ``tuned``: the
default policy (start at ``DEFAULT_CHUNK_BYTES``, tune by measurement, see
``fastjac._engine.chunking``), measured after its first call has tuned it.

Policies come from one table, :data:`POLICIES` (``{chunk: nbytes_of}``):
``nbytes_of(n, m)`` is the chunk in bytes for one test (None: the default
policy), applied with the engine's ``chunk_policy`` with the tuner off.  The
test checks that the engine really used it, so a moved knob cannot turn every
column into the default silently.
"""
import contextlib

import numpy as np
import pytest

import fastjac
from fastjac._engine import chunk_policy
from fastjac._workloads import make
from fastjac.engine import jacobian_with_info


def _fixed(nbytes_of):
    return nbytes_of


def _kib(k):
    return _fixed(lambda n, m, k=k: k * 1024)


POLICIES = {
    **{k: _kib(k) for k in (64, 128, 256, 512, 1024, 4096)},
    # The whole ±h stack (2n points of n inputs and m outputs) in one call.
    "whole": _fixed(lambda n, m: 2 * n * (n + m) * 8 + 1),
    "tuned": lambda n, m: None,  # the default policy, untouched
}
CHUNKS_KIB = list(POLICIES)


@pytest.mark.parametrize("n", [1000, 3000])
@pytest.mark.parametrize("workload", ["sigmoid", "softmax", "softmax-ce", "dense-ce", "batched-dense"])
@pytest.mark.parametrize("chunk", CHUNKS_KIB)
def test_chunking(benchmark, workload, n, chunk):
    f, x, J_exact = make(workload, n)
    m = int(np.size(f(x)))
    nbytes = POLICIES[chunk](n, m)
    policy = contextlib.nullcontext() if nbytes is None else chunk_policy(nbytes, tune=False)
    with policy:
        run = lambda: fastjac.jacobian(f, x, vectorized=True)  # noqa: E731
        run()  # warm; for "tuned", this call tunes (and the engine remembers it)
        if nbytes is not None:  # central differences: 2 points of n + m float64 per direction
            _, info = jacobian_with_info(f, x, vectorized=True)
            assert info.block_size == min(n, max(1, nbytes // (2 * (n + m) * 8))), info.block_size
        benchmark.group = f"chunking|{workload}|n={n}"
        benchmark.extra_info["chunk_kib"] = chunk
        J = benchmark(run)
    assert np.max(np.abs(J - J_exact)) <= 1e-6  # as in bench_engine: loosest model bound
