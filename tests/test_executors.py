"""executor=: threads, processes and a dask cluster give bitwise the in-process result.

Every path (batched in both layouts, the loop, the Numba driver, colored
``sparsity=``, sampled columns, jvp/vjp and the checks) on every executor,
for plain functions and for the two kinds that once made thread executors
silently wrong: an ``f`` that returns a view of its input, and one that
returns a buffer of its own that it reuses.  ``max_memory`` is small, so many
chunks are in flight at once.
"""
from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import textwrap
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numba
import numpy as np
import pytest

import fastjac
from fastjac._engine import loopback_cluster, numba_threading_layer
from fastjac._engine.parallel import layer_loadable
from fastjac.directional import sampled_jacobian

X = np.linspace(-1, 1, 120)
# 2 points x (120 + 120) x 8 bytes per direction: 4 per chunk, 30 chunks.
OPTS = dict(max_memory=8_000)


def mix(x):
    """Module level, so that the standard library's pickle can send it."""
    return np.tanh(x) * np.sum(x, axis=-1, keepdims=True)


def mix_columns(x):
    """Column-major: reduces over axis 0 (batches only as trailing columns)."""
    return np.tanh(x) * np.sum(x, axis=0, keepdims=True)


def identity(x):
    """Returns a view of its input: the engine's own stack buffer."""
    return x


def identity_point(x):
    """A view of its input, and not batch-aware (forces the loop)."""
    if x.ndim != 1:
        raise ValueError("one point at a time")
    return x[::-1]


class Reusing:
    """Returns the same buffer on every call (a common 'optimisation')."""

    def __init__(self):
        self.buf = {}

    def __call__(self, x):
        out = self.buf.get(x.shape)
        if out is None:
            out = self.buf[x.shape] = np.empty(x.shape)
        np.multiply(np.sin(x), 2.0, out=out)
        return out


@numba.njit(cache=False)
def jitted(x):
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        out[i] = np.sin(x[i]) * x[(i + 1) % x.shape[0]]
    return out


def _tridiagonal(n):
    return np.eye(n, dtype=bool) | np.eye(n, k=1, dtype=bool) | np.eye(n, k=-1, dtype=bool)


def _paths():
    """name -> (f, run(f, executor)); every run returns arrays."""
    V = np.random.default_rng(0).standard_normal((5, X.size))
    U = np.random.default_rng(1).standard_normal((3, X.size))
    P = _tridiagonal(X.size)

    def dense(f, vec):
        return lambda g, ex: fastjac.jacobian(g, X, vectorized=vec, executor=ex, **OPTS)

    return {
        "vectorized": (mix, dense(mix, True)),
        "trailing": (mix_columns, dense(mix_columns, "auto")),
        "loop": (mix, dense(mix, False)),
        "numba": (jitted, dense(jitted, False)),
        "view-batched": (identity, dense(identity, "auto")),
        "view-loop": (identity_point, dense(identity_point, "auto")),
        "reusing-batched": (Reusing(), dense(None, True)),
        "reusing-loop": (Reusing(), dense(None, False)),
        "colored": (np.sin, lambda g, ex: fastjac.jacobian(g, X, sparsity=P, executor=ex, **OPTS)),
        "sampled": (mix, lambda g, ex: sampled_jacobian(g, X, np.arange(0, 120, 7), executor=ex,
                                                        max_memory=4_000)[0]),
        "jvp": (mix, lambda g, ex: fastjac.jvp(g, X, V, executor=ex, max_memory=4_000)),
        "vjp": (identity_point, lambda g, ex: fastjac.vjp(g, X, U, executor=ex, **OPTS)),
        "check": (mix, lambda g, ex: np.asarray(fastjac.check_jacobian(
            g, X, fastjac.jacobian(g, X), mode="full", executor=ex, **OPTS).numeric)),
    }


PATHS = _paths()


def _thread(n):
    return lambda: ThreadPoolExecutor(n)


def _process(method):
    return lambda: ProcessPoolExecutor(2, mp_context=multiprocessing.get_context(method))


EXECUTORS = {"threads-1": _thread(1), "threads-2": _thread(2), "threads-4": _thread(4),
             "fork": _process("fork"), "spawn": _process("spawn")}


@pytest.fixture(scope="module")
def pools():
    made = {name: make() for name, make in EXECUTORS.items()}
    yield made
    for ex in made.values():
        ex.shutdown(wait=True)


@pytest.fixture(scope="module")
def dask_client():
    pytest.importorskip("distributed")
    with loopback_cluster(n_workers=2) as client:
        yield client


@pytest.mark.parametrize("path", sorted(PATHS))
@pytest.mark.parametrize("executor", sorted(EXECUTORS))
def test_every_path_is_bitwise_the_in_process_result(pools, path, executor):
    f, go = PATHS[path]
    expected = go(f, None)
    got = go(f, pools[executor])
    np.testing.assert_array_equal(got, expected)


@pytest.mark.slow
@pytest.mark.parametrize("path", sorted(PATHS))
def test_every_path_on_a_dask_cluster(dask_client, path):
    f, go = PATHS[path]
    np.testing.assert_array_equal(go(f, dask_client), go(f, None))


def test_issue_reproduction_threads_with_a_view_and_the_loop():
    """The reported cases: 0.99 and 1.0 off before, with no error."""
    x = np.linspace(0.1, 1, 2000)
    for workers in (1, 2):
        with ThreadPoolExecutor(workers) as ex:
            J = fastjac.jacobian(np.sin, x, vectorized=False, executor=ex)
            assert np.abs(J - np.diag(np.cos(x))).max() < 1e-8
            J = fastjac.jacobian(lambda t: t, x, executor=ex)
            assert np.abs(J - np.eye(2000)).max() < 1e-8


def test_a_future_without_result_is_a_clear_error():
    class Eager:
        def submit(self, fn, *args):
            return fn(*args)  # a plain value, not a future

    with pytest.raises(TypeError, match="`executor.submit` must return a future"):
        fastjac.jacobian(mix, X, executor=Eager(), **OPTS)


def test_lambda_on_a_process_pool_says_what_to_do():
    with ProcessPoolExecutor(1) as ex:
        with pytest.raises(TypeError, match="ThreadPoolExecutor.*module-level.*dask"):
            fastjac.jacobian(lambda v: v ** 2, X, executor=ex, **OPTS)


def test_dask_executor_and_lambdas(dask_client):
    reference = fastjac.jacobian(mix, X, **OPTS)
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
    layer, launched = numba_threading_layer()
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
    if layer_loadable("omp"):
        layers.append("omp")
    if layer_loadable("tbb"):
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
