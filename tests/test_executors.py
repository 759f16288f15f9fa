"""executor=: threads, processes and a dask cluster give the in-process result."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pytest

import fastjac
from fastjac import _parallel
from fastjac.directional import sampled_jacobian

X = np.linspace(-1, 1, 120)
# 2 points x (120 + 120) x 8 bytes per direction: 4 per chunk, 30 chunks.
OPTS = dict(max_memory=8_000)


def mix(x):
    """Module level, so that the standard library's pickle can send it."""
    return np.tanh(x) * np.sum(x, axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def dask_client():
    pytest.importorskip("distributed")
    with _parallel.loopback_cluster(n_workers=2) as client:
        yield client


@pytest.fixture(scope="module")
def reference():
    return fastjac.jacobian(mix, X, **OPTS)


def test_threads(reference):
    with ThreadPoolExecutor(2) as ex:
        J = fastjac.jacobian(mix, X, executor=ex, **OPTS)
    np.testing.assert_array_equal(J, reference)  # same chunks, same arithmetic


def test_processes(reference):
    with ProcessPoolExecutor(2) as ex:
        J = fastjac.jacobian(mix, X, executor=ex, **OPTS)
        cols, idx = sampled_jacobian(mix, X, [5, 7, 100], executor=ex, max_memory=4_000)
    np.testing.assert_array_equal(J, reference)
    np.testing.assert_array_equal(cols, reference[:, idx])


def test_structured_on_threads():
    with ThreadPoolExecutor(2) as ex:
        d = fastjac.jacobian(np.tanh, X, sparsity="diagonal", output="diagonal", executor=ex)
    np.testing.assert_array_equal(d, fastjac.jacobian(np.tanh, X, sparsity="diagonal",
                                                      output="diagonal"))


def test_lambda_on_a_process_pool_says_what_to_do():
    with ProcessPoolExecutor(1) as ex:
        with pytest.raises(TypeError, match="ThreadPoolExecutor.*module-level.*dask"):
            fastjac.jacobian(lambda v: v ** 2, X, executor=ex, **OPTS)


def test_dask_cluster(dask_client, reference):
    J = fastjac.jacobian(mix, X, executor=dask_client, **OPTS)
    np.testing.assert_array_equal(J, reference)
    J2 = fastjac.jacobian(mix, X, executor=dask_client.get_executor(), **OPTS)
    np.testing.assert_array_equal(J2, reference)
    # dask pickles with cloudpickle: lambdas travel too.
    sq = lambda v: v ** 2  # noqa: E731
    J3 = fastjac.jacobian(sq, X, executor=dask_client, **OPTS)
    np.testing.assert_array_equal(J3, fastjac.jacobian(sq, X, **OPTS))


def test_dask_unpicklable_f_is_explained(dask_client):
    import threading

    lock = threading.Lock()

    def f(v):
        with lock:
            return v ** 2

    with pytest.raises(TypeError, match="cloudpickle"):
        fastjac.jacobian(f, X, executor=dask_client, **OPTS)


def test_threading_layer_report_never_launches_threads():
    from numba.np.ufunc import parallel as npp

    before = npp._is_initialized
    layer, launched = _parallel.numba_threading_layer()
    assert layer in ("tbb", "omp", "workqueue")
    assert launched == before == npp._is_initialized  # looked up, not launched


# Numba parallel=True inside f, under each threading layer, with threads and
# with a fork-based process pool.  In a subprocess with a timeout: without
# fastjac's safeguards workqueue aborts the process and omp kills (or hangs)
# forked workers, which must fail the test instead of blocking CI.
SCRIPT = textwrap.dedent('''
    import logging, sys
    import multiprocessing as mp
    from concurrent.futures import ThreadPoolExecutor, ProcessPoolExecutor
    import numba
    import numpy as np
    import fastjac

    @numba.njit(parallel=True, cache=False)
    def _scaled_tanh(x):
        out = np.empty_like(x)
        for i in numba.prange(x.shape[0]):
            out[i] = np.tanh(x[i]) * (1.0 + 0.1 * i)
        return out

    def f(x):
        return _scaled_tanh(np.ascontiguousarray(x).reshape(-1))[:5] + x.sum()

    if __name__ == "__main__":
        logging.basicConfig(level=logging.INFO)
        kind = sys.argv[1]
        x = np.linspace(-1, 1, 400)
        J0 = fastjac.jacobian(f, x, vectorized=False)
        pool = (ThreadPoolExecutor(2) if kind == "thread"
                else ProcessPoolExecutor(2, mp_context=mp.get_context("fork")))
        with pool:
            J = fastjac.jacobian(f, x, vectorized=False, executor=pool, max_memory=40_000)
        print("layer", numba.threading_layer(), "equal", bool(np.array_equal(J, J0)))
''')


def _layers():
    layers = ["workqueue"]
    if _parallel._loadable("omp"):
        layers.append("omp")
    if _parallel._loadable("tbb"):
        layers.append("tbb")
    return layers


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["thread", "fork"])
@pytest.mark.parametrize("layer", _layers())
def test_numba_parallel_f_under_each_threading_layer(tmp_path, layer, kind):
    script = tmp_path / "parallel_f.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, NUMBA_THREADING_LAYER=layer, NUMBA_NUM_THREADS="2")
    proc = subprocess.run([sys.executable, str(script), kind], capture_output=True, text=True,
                          timeout=240, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"layer {layer} equal True" in proc.stdout
    if layer == "omp" and kind == "fork":
        assert "'spawn' process pool" in proc.stderr  # the fork pool was swapped
