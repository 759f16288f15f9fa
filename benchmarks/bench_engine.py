"""Engine speed: fastjac's paths against the notebook loop and scipy, side by side.

Groups are ``engine|{workload}|n={n}``; the implementation is the test id and
``extra_info["impl"]``.  ``f-alone`` times only the chunked batched calls of
``f`` that the vectorized path makes, with the chunk size the engine settles
on: the floor any engine must pay (it excludes writing J).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import fastjac
from fastjac._workloads import WORKLOADS, make
from fastjac.engine import jacobian_with_info
from fastjac.reference import numeric_jacobian as reference_loop

SIZES = [10, 100, 1000, 3000]
IMPLS = ["reference-loop", "scipy", "fastjac-vectorized", "fastjac-loop", "fastjac-numba", "f-alone"]

# Every result must be within 1e-6 of the analytic J: the loosest method here
# is the loop's fixed step 1e-4, whose truncation h**2/6*|f'''| stays below
# 1e-8 * max|f'''| (~10 for these workloads) and round-off EPS*|f|/h below 1e-10.
TOLERANCE = 1e-6


def _numba_point_function(name, n):
    """A jitted single-point version of the workload (the driver's use case)."""
    import numba

    f, x, _ = make(name, n)
    rng_data = {}
    if name == "sigmoid":
        return numba.njit(lambda z: 1 / (1 + np.exp(-z)))
    if name == "tanh":
        return numba.njit(lambda z: np.tanh(z))

    @numba.njit
    def softmax(z):
        e = np.exp(z - z.max())
        return e / e.sum()

    if name == "softmax":
        return softmax
    # Recover the closed-over data of the numpy workload (same seed).
    cells = {k: c.cell_contents for k, c in zip(f.__code__.co_freevars, f.__closure__ or ())}
    rng_data.update(cells)
    if name == "softmax-ce":
        y = cells["y"]
        return numba.njit(lambda z: -np.sum(y * np.log(softmax(z))))
    if name == "dense-ce":
        xv, b, y = cells["x"], cells["b"], cells["y"]

        @numba.njit
        def dense_ce(W):
            z = b.copy()
            for i in range(W.shape[0]):  # hand loop: np.dot in njit would need SciPy
                for j in range(W.shape[1]):
                    z[i] += W[i, j] * xv[j]
            return -np.sum(y * np.log(softmax(z)))

        return dense_ce
    X, b, Y, m = cells["X"], cells["b"], cells["Y"], cells["m"]

    @numba.njit
    def batched_dense(W):
        total = 0.0
        for s in range(X.shape[1]):
            z = b[:, 0].copy()
            for i in range(W.shape[0]):
                for j in range(W.shape[1]):
                    z[i] += W[i, j] * X[j, s]
            a = softmax(z)
            total -= np.sum(Y[:, s] * np.log(np.maximum(a, 1e-10)))
        return total / m

    return batched_dense


def _runner(impl, name, n):
    f, x, J_exact = make(name, n)
    if impl == "reference-loop":
        return (lambda: reference_loop(x, f)), J_exact
    if impl == "scipy":
        # scipy keeps it private (scipy.optimize._numdiff) but documents its behaviour.
        from scipy.optimize._numdiff import approx_derivative

        shape = x.shape
        out_shape = np.shape(f(x))

        def run():
            J = approx_derivative(lambda v: f(v.reshape(shape)), x.ravel(), method="3-point")
            return J.reshape(out_shape + shape)

        return run, J_exact
    if impl == "fastjac-vectorized":
        return (lambda: fastjac.jacobian(f, x, vectorized=True)), J_exact
    if impl == "fastjac-loop":
        return (lambda: fastjac.jacobian(f, x, vectorized=False)), J_exact
    if impl == "fastjac-numba":
        g = _numba_point_function(name, n)
        return (lambda: fastjac.jacobian(g, x, vectorized=False)), J_exact
    if impl == "f-alone":
        # The same chunking the engine settles on (after its tuning, if any).
        for _ in range(2):
            _, info = jacobian_with_info(f, x, vectorized=True)
        b = min(info.block_size, x.size)
        stack = np.repeat(x[None], 2 * b, axis=0)
        calls = math.ceil(x.size / b)

        def run():
            for _ in range(calls):
                f(stack)

        return run, None
    raise ValueError(impl)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("workload", list(WORKLOADS))
@pytest.mark.parametrize("impl", IMPLS)
def test_engine(benchmark, impl, workload, n):
    run, J_exact = _runner(impl, workload, n)
    run()  # warm: JIT compilation, the auto probe, page faults of the stack buffer
    benchmark.group = f"engine|{workload}|n={n}"
    benchmark.extra_info["impl"] = impl
    result = benchmark(run)
    if J_exact is not None:
        assert result.shape == J_exact.shape
        assert np.max(np.abs(result - J_exact)) <= TOLERANCE
