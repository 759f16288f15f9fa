"""Where the chunking policy comes from: the engine at fixed chunk sizes, and tuned.

Group ``chunking|{workload}|n={n}``; the id is the chunk size in KiB with the
tuner off (``whole`` = the entire ±h stack in one call), or ``tuned``: the
default policy (start at ``DEFAULT_CHUNK_BYTES``, tune by measurement, see
``fastjac._engine.chunking``), measured after its first call has tuned it.

Policies come from one table, :data:`POLICIES` (``{chunk: setup}``):
``setup(monkeypatch, n, m)`` sets the engine's chunk size for one test and
returns the chunk in bytes (None: the default policy).  The test checks that
the engine really used it, so a moved knob cannot turn every column into
the default silently.
"""
import numpy as np
import pytest

import fastjac
import fastjac._engine.memory as engine_memory
import fastjac._engine.pipeline as engine_pipeline
from fastjac._workloads import make
from fastjac.engine import jacobian_with_info

# The knobs live in the engine's internals: ``memory.DEFAULT_CHUNK_BYTES`` is
# read by ``block_size`` at each call, and the pipeline decides to tune by
# comparing the run's length with its own ``MIN_BLOCKS_TO_TUNE``.


def _fixed(nbytes_of):
    def setup(monkeypatch, n, m):
        nbytes = nbytes_of(n, m)
        monkeypatch.setattr(engine_memory, "DEFAULT_CHUNK_BYTES", nbytes)
        monkeypatch.setattr(engine_pipeline, "MIN_BLOCKS_TO_TUNE", 10 ** 9)  # fixed: no tuning
        return nbytes

    return setup


def _kib(k):
    return _fixed(lambda n, m: k * 1024)


POLICIES = {
    **{k: _kib(k) for k in (64, 128, 256, 512, 1024, 4096)},
    # The whole ±h stack (2n points of n inputs and m outputs) in one call.
    "whole": _fixed(lambda n, m: 2 * n * (n + m) * 8 + 1),
    "tuned": lambda monkeypatch, n, m: None,  # the default policy, untouched
}
CHUNKS_KIB = list(POLICIES)


@pytest.mark.parametrize("n", [1000, 3000])
@pytest.mark.parametrize("workload", ["sigmoid", "softmax", "softmax-ce", "dense-ce", "batched-dense"])
@pytest.mark.parametrize("chunk", CHUNKS_KIB)
def test_chunking(benchmark, monkeypatch, workload, n, chunk):
    f, x, J_exact = make(workload, n)
    m = int(np.size(f(x)))
    nbytes = POLICIES[chunk](monkeypatch, n, m)
    run = lambda: fastjac.jacobian(f, x, vectorized=True)  # noqa: E731
    run()  # warm; for "tuned", this call tunes (and the engine remembers it)
    if nbytes is not None:  # central differences: 2 points of n + m float64 per direction
        _, info = jacobian_with_info(f, x, vectorized=True)
        assert info.block_size == min(n, max(1, nbytes // (2 * (n + m) * 8))), info.block_size
    benchmark.group = f"chunking|{workload}|n={n}"
    benchmark.extra_info["chunk_kib"] = chunk
    J = benchmark(run)
    assert np.max(np.abs(J - J_exact)) <= 1e-6  # as in bench_engine: loosest model bound
