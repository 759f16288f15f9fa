"""Where the default chunk size comes from: the engine at several chunk sizes.

Group ``chunking|{workload}|n={n}``; the id is the chunk size in KiB
(``whole`` = the entire ±h stack in one call).  The default,
``fastjac.engine.DEFAULT_CHUNK_BYTES``, is the size that was best or close to
best on every workload here.
"""
import numpy as np
import pytest

import fastjac
import fastjac.engine as engine
from fastjac._workloads import make

CHUNKS_KIB = [64, 128, 256, 512, 1024, 4096, "whole"]


@pytest.mark.parametrize("n", [1000, 3000])
@pytest.mark.parametrize("workload", ["sigmoid", "softmax", "softmax-ce", "dense-ce", "batched-dense"])
@pytest.mark.parametrize("chunk", CHUNKS_KIB)
def test_chunking(benchmark, monkeypatch, workload, n, chunk):
    f, x, J_exact = make(workload, n)
    m = int(np.size(f(x)))
    nbytes = (2 * n * (n + m) * 8 + 1) if chunk == "whole" else chunk * 1024
    monkeypatch.setattr(engine, "DEFAULT_CHUNK_BYTES", nbytes)
    run = lambda: fastjac.jacobian(f, x, vectorized=True)  # noqa: E731
    run()
    benchmark.group = f"chunking|{workload}|n={n}"
    benchmark.extra_info["chunk_kib"] = chunk
    J = benchmark(run)
    assert np.max(np.abs(J - J_exact)) <= 1e-6  # as in bench_engine: loosest model bound
