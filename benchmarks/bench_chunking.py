"""Where the chunking policy comes from: the engine at fixed chunk sizes, and tuned.

Group ``chunking|{workload}|n={n}``; the id is the chunk size in KiB with the
tuner off (``whole`` = the entire ±h stack in one call), or ``tuned``: the
default policy (start at ``DEFAULT_CHUNK_BYTES``, tune by measurement, see
``fastjac._chunking``), measured after its first call has tuned it.
"""
import numpy as np
import pytest

import fastjac
import fastjac.engine as engine
from fastjac._workloads import make

CHUNKS_KIB = [64, 128, 256, 512, 1024, 4096, "whole", "tuned"]


@pytest.mark.parametrize("n", [1000, 3000])
@pytest.mark.parametrize("workload", ["sigmoid", "softmax", "softmax-ce", "dense-ce", "batched-dense"])
@pytest.mark.parametrize("chunk", CHUNKS_KIB)
def test_chunking(benchmark, monkeypatch, workload, n, chunk):
    f, x, J_exact = make(workload, n)
    m = int(np.size(f(x)))
    if chunk != "tuned":
        nbytes = (2 * n * (n + m) * 8 + 1) if chunk == "whole" else chunk * 1024
        monkeypatch.setattr(engine, "DEFAULT_CHUNK_BYTES", nbytes)
        monkeypatch.setattr(engine, "MIN_BLOCKS_TO_TUNE", 10 ** 9)  # fixed size: no tuning
    run = lambda: fastjac.jacobian(f, x, vectorized=True)  # noqa: E731
    run()
    benchmark.group = f"chunking|{workload}|n={n}"
    benchmark.extra_info["chunk_kib"] = chunk
    J = benchmark(run)
    assert np.max(np.abs(J - J_exact)) <= 1e-6  # as in bench_engine: loosest model bound
