"""Engine speed: fastjac's paths against the notebook loop and scipy, side by side.

Groups are ``engine|{workload}|n={n}``; the implementation is the test id and
``extra_info["impl"]``.  Implementations come from one table, :data:`SETUPS`
(``{impl: setup}``, as numbagg's ``COMPARISONS``): ``setup(case)`` prepares
everything and returns the zero-argument callable that is timed.

``fastjac`` is the default call (``vectorized="auto"``, warm: its plan and
fast path are reused).  ``floor`` is a plain chunked batched central
difference with no validation (:func:`_floor`): the issue's target is fastjac
within 1.3x of it at every n.  ``f-alone`` times only the chunked batched calls
of ``f`` that the vectorized path makes, with the chunk size the engine
settles on: what any engine must pay (it excludes writing J).
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import fastjac
from fastjac._workloads import IMPLEMENTATIONS, WORKLOADS, case
from fastjac.engine import jacobian_with_info

SIZES = [3, 10, 100, 1000, 3000]

# Every result must be within 1e-6 of the analytic J: the loosest method here
# is the loop's fixed step 1e-4, whose truncation h**2/6*|f'''| stays below
# 1e-8 * max|f'''| (~10 for these workloads) and round-off EPS*|f|/h below 1e-10.
TOLERANCE = 1e-6


# --------------------------------------------------------------------------
# Jitted single-point versions of the workloads (the Numba driver's use case),
# built from the data the numpy workload closes over: workload -> build(data).

def _numba_softmax():
    import numba

    @numba.njit
    def softmax(z):
        e = np.exp(z - z.max())
        return e / e.sum()

    return softmax


def _numba_sigmoid(data):
    import numba

    return numba.njit(lambda z: 1 / (1 + np.exp(-z)))


def _numba_tanh(data):
    import numba

    return numba.njit(lambda z: np.tanh(z))


def _numba_softmax_ce(data):
    import numba

    softmax, y = _numba_softmax(), data["y"]
    return numba.njit(lambda z: -np.sum(y * np.log(softmax(z))))


def _numba_dense_ce(data):
    import numba

    softmax, xv, b, y = _numba_softmax(), data["x"], data["b"], data["y"]

    @numba.njit
    def dense_ce(W):
        z = b.copy()
        for i in range(W.shape[0]):  # hand loop: np.dot in njit would need SciPy
            for j in range(W.shape[1]):
                z[i] += W[i, j] * xv[j]
        return -np.sum(y * np.log(softmax(z)))

    return dense_ce


def _numba_batched_dense(data):
    import numba

    softmax = _numba_softmax()
    X, b, Y, m = data["X"], data["b"], data["Y"], data["m"]

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


NUMBA_POINT_FUNCTIONS = {
    "sigmoid": _numba_sigmoid,
    "tanh": _numba_tanh,
    "softmax": lambda data: _numba_softmax(),
    "softmax-ce": _numba_softmax_ce,
    "dense-ce": _numba_dense_ce,
    "batched-dense": _numba_batched_dense,
}


def _fastjac_numba(c):
    g = NUMBA_POINT_FUNCTIONS[c.workload](c.data)
    return lambda: fastjac.jacobian(g, c.x, vectorized=False)


def _f_alone(c):
    # The same chunking the engine settles on (after its tuning, if any).
    for _ in range(2):
        _, info = jacobian_with_info(c.f, c.x, vectorized=True)
    b = min(info.block_size, c.x.size)
    stack = np.repeat(c.x[None], 2 * b, axis=0)
    calls = math.ceil(c.x.size / b)

    def run():
        for _ in range(calls):
            c.f(stack)

    return run


def _floor(c):
    """A plain chunked batched central difference, no validation, no plan: the
    20 lines anyone would write, and the floor fastjac's own overhead is measured
    against.  Same step rule and chunk budget (256 KiB) as the engine's default."""
    x, x_shape = c.x.reshape(-1), c.x.shape
    n = x.size
    out_shape = np.shape(c.f(c.x))
    m = int(np.prod(out_shape, dtype=int))
    h = np.finfo(np.float64).eps ** (1 / 3) * np.maximum(1.0, np.abs(x))
    h = (x + h) - x
    b = max(1, (1 << 18) // (2 * (n + m) * 8))

    def run():
        JT = np.empty((n, m))
        for lo in range(0, n, b):
            k = min(b, n - lo)
            idx = np.arange(lo, lo + k)
            X = np.repeat(x[None], 2 * k, axis=0)
            X[np.arange(k), idx] -= h[idx]
            X[k + np.arange(k), idx] += h[idx]
            Y = np.asarray(c.f(X.reshape((2 * k,) + x_shape))).reshape(2 * k, m)
            JT[lo:lo + k] = (Y[k:] - Y[:k]) / (2 * h[idx])[:, None]
        return JT.T.reshape(out_shape + x_shape)

    return run


SETUPS = {
    "reference-loop": IMPLEMENTATIONS["reference-loop"],
    "scipy": IMPLEMENTATIONS["scipy"],
    "fastjac": IMPLEMENTATIONS["fastjac"],
    "floor": _floor,
    "fastjac-vectorized": IMPLEMENTATIONS["fastjac-vectorized"],
    "fastjac-loop": IMPLEMENTATIONS["fastjac-loop"],
    "fastjac-numba": _fastjac_numba,
    "f-alone": _f_alone,
}
#: Implementations whose result is not a Jacobian (nothing to compare).
NOT_A_JACOBIAN = {"f-alone"}


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("workload", list(WORKLOADS))
@pytest.mark.parametrize("impl", list(SETUPS))
def test_engine(benchmark, impl, workload, n):
    c = case(workload, n)
    run = SETUPS[impl](c)
    run()  # warm: JIT compilation, the auto probe, page faults of the stack buffer
    benchmark.group = f"engine|{workload}|n={n}"
    benchmark.extra_info["impl"] = impl
    result = benchmark(run)
    if impl not in NOT_A_JACOBIAN:
        assert result.shape == c.exact.shape
        assert np.max(np.abs(result - c.exact)) <= TOLERANCE
