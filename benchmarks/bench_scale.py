"""Scale: structured Jacobians, directional/sampled derivatives and executors.

Groups ``scale|{workload}|n={n}``; the implementation is the test id and
``extra_info["impl"]``.  Side by side in one run:

- structured workloads (``sigmoid`` diagonal, ``tridiagonal``, a
  ``batch-layer`` applied sample by sample) at n = 1e3, 1e4, 1e5: fastjac with
  ``sparsity=``, scipy ``approx_derivative`` with and without its
  ``sparsity=``, and the notebook's element loop (only where it runs in
  under ~2 s and its dense J fits);
- the ~1M-parameter softmax layer: 3 directions (``jvp``), 32 sampled
  coordinates, against one loss evaluation (the unit);
- executor overhead: in-process, a ThreadPoolExecutor and a dask LocalCluster.
"""
from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest

import fastjac
from fastjac._engine import loopback_cluster
from fastjac.reference import numeric_jacobian as reference_loop

SIZES = [1_000, 10_000, 100_000]
# Dense scipy runs only while J stays under ~1 GB and the run under ~2 s; the
# element loop only where it takes under ~2 s (2n calls of f plus a dense J):
# both n = 1000.
DENSE_LIMIT = 1 << 30
LOOP_LIMIT = 1_000
DENSE_SCIPY_LIMIT = 1_000
# Central differences with h ~ EPS**(1/3) (fastjac, scipy) or 1e-4 (loop):
# truncation h**2/6*|f'''| <= 2e-9 * max|f'''| (<= 10 here), round-off
# EPS*|f|/h <= 1e-10: 1e-6 is a safe bar for every implementation.
TOLERANCE = 1e-6
FEATURES = 10


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _tridiagonal(v):
    pad = np.pad(v, [(0, 0)] * (v.ndim - 1) + [(1, 1)])
    return v ** 2 + pad[..., :-2] * pad[..., 2:]


@dataclass(frozen=True)
class Problem:
    """A structured workload: ``f``, ``x``, the sparsity given to fastjac and to
    scipy, and the exact J as CSR."""

    f: Callable
    x: np.ndarray
    sparsity: object
    pattern: object
    exact: object


def _sigmoid_problem(n, rng):
    import scipy.sparse as sp

    x = rng.normal(size=n)
    s = _sigmoid(x)
    exact = sp.diags_array(s * (1 - s)).tocsr()
    return Problem(_sigmoid, x, "diagonal", sp.eye_array(n, format="csr"), exact)


def _tridiagonal_problem(n, rng):
    import scipy.sparse as sp

    x = rng.normal(size=n)
    P = sp.diags_array([np.ones(n - 1), np.ones(n), np.ones(n - 1)], offsets=[-1, 0, 1]).tocsr()
    # d f_i / d v_{i-1} = v_{i+1}, d f_i / d v_{i+1} = v_{i-1} (zero past the ends).
    sub, sup = np.append(x[2:], 0.0), np.insert(x[:-2], 0, 0.0)
    exact = sp.diags_array([sub, 2 * x, sup], offsets=[-1, 0, 1]).tocsr()
    return Problem(_tridiagonal, x, P, P, exact)


def _batch_layer_problem(n, rng):
    """Z = tanh(W @ X), X of shape (FEATURES, B), flattened for scipy."""
    import scipy.sparse as sp

    B = n // FEATURES
    W = rng.normal(size=(FEATURES, FEATURES)) / np.sqrt(FEATURES)
    X = rng.normal(size=(FEATURES, B))

    def layer(Xv):
        return np.tanh(W @ Xv)

    Z = layer(X)
    # J[(i, b), (j, b)] = (1 - Z_ib^2) W_ij, zero across samples.
    rows = np.repeat(np.arange(FEATURES * B).reshape(FEATURES, B)[:, None, :], FEATURES, axis=1)
    cols = np.repeat(np.arange(FEATURES * B).reshape(FEATURES, B)[None, :, :], FEATURES, axis=0)
    vals = (1 - Z ** 2)[:, None, :] * W[:, :, None]
    exact = sp.csr_array((vals.ravel(), (rows.ravel(), cols.ravel())), shape=(n, n))
    return Problem(layer, X, fastjac.batch_independent(axis=1), exact.astype(bool), exact)


PROBLEMS = {
    "sigmoid": _sigmoid_problem,
    "tridiagonal": _tridiagonal_problem,
    "batch-layer": _batch_layer_problem,
}


def make(name, n):
    """The :class:`Problem` ``name`` at size ``n`` (seed 0)."""
    return PROBLEMS[name](n, np.random.default_rng(0))


# Implementations: impl -> setup(problem, n) -> (benchmarked callable, result -> CSR).

def _flat(p):
    return lambda v: p.f(v.reshape(p.x.shape)).ravel()  # scipy wants 1-d


def _fastjac_structured(p, n):
    import scipy.sparse as sp

    if isinstance(p.sparsity, str):  # a named pattern: the diagonal comes back as a vector
        fn = lambda: fastjac.jacobian(p.f, p.x, sparsity=p.sparsity, output="diagonal")  # noqa: E731
        return fn, lambda d: sp.diags_array(d.ravel()).tocsr()
    fn = lambda: fastjac.jacobian(p.f, p.x, sparsity=p.sparsity, output="sparse")  # noqa: E731
    return fn, lambda J: J


def _scipy_sparsity(p, n):
    import scipy.sparse as sp
    from scipy.optimize._numdiff import approx_derivative

    flat = _flat(p)
    return (lambda: approx_derivative(flat, p.x.ravel(), method="3-point", sparsity=p.pattern),
            sp.csr_array)


def _scipy_dense(p, n):
    import scipy.sparse as sp
    from scipy.optimize._numdiff import approx_derivative

    if n * n * 8 > DENSE_LIMIT:
        pytest.skip(f"dense J of {n}x{n} is {n * n * 8 / 2**30:.1f} GiB (> ~1 GB)")
    if n > DENSE_SCIPY_LIMIT:
        pytest.skip(f"scipy without sparsity makes {2 * n} calls and a dense J: > ~2 s "
                    "(11 s at n=1e4 here)")
    flat = _flat(p)
    return lambda: approx_derivative(flat, p.x.ravel(), method="3-point"), sp.csr_array


def _reference_loop(p, n):
    import scipy.sparse as sp

    if n > LOOP_LIMIT:
        pytest.skip(f"the element loop needs {2 * n} calls and a {n}x{n} dense J (> ~2 s)")
    return lambda: reference_loop(p.x, p.f), lambda J: sp.csr_array(J.reshape(n, n))


STRUCT_SETUPS = {
    "fastjac": _fastjac_structured,
    "scipy-sparsity": _scipy_sparsity,
    "scipy-dense": _scipy_dense,
    "reference-loop": _reference_loop,
}
STRUCT_IMPLS = list(STRUCT_SETUPS)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("impl", STRUCT_IMPLS)
@pytest.mark.parametrize("name", list(PROBLEMS))
def test_structured(benchmark, name, impl, n):
    p = make(name, n)
    fn, as_csr = STRUCT_SETUPS[impl](p, n)
    fn()  # warm: Numba coloring kernel, vectorized probe
    benchmark.group = f"scale|{name}|n={n}"
    benchmark.extra_info["impl"] = impl
    J = benchmark(fn)
    err = abs(as_csr(J) - p.exact).max()
    assert err <= TOLERANCE, err


# --------------------------------------------------------------------------
# The ~1M-parameter layer: loss = mean softmax cross-entropy of W @ X + b.

F, BATCH = 1024, 64


@pytest.fixture(scope="module")
def layer():
    rng = np.random.default_rng(7)
    W = rng.normal(0, 1 / np.sqrt(F), (F, F))
    X = rng.normal(size=(F, BATCH))
    b = rng.normal(0, 0.1, (F, 1))
    Y = np.eye(F)[:, rng.integers(0, F, BATCH)]

    def loss(W):
        Z = W @ X + b
        Z = Z - Z.max(axis=-2, keepdims=True)
        return -(Y * (Z - np.log(np.exp(Z).sum(axis=-2, keepdims=True)))).sum(axis=(-2, -1)) / BATCH

    Z = W @ X + b
    P = np.exp(Z - Z.max(axis=0))
    P /= P.sum(axis=0)
    G = (P - Y) @ X.T / BATCH
    V = rng.normal(size=(3, F, F))
    return loss, W, G, V


@pytest.mark.parametrize("impl", ["one-loss-eval", "jvp-3-directions", "sampled-32-coords"])
def test_million_parameter_layer(benchmark, layer, impl):
    loss, W, G, V = layer
    fns = {
        "one-loss-eval": lambda: loss(W),
        "jvp-3-directions": lambda: fastjac.jvp(loss, W, V),
        "sampled-32-coords": lambda: fastjac.sampled_jacobian(loss, W, size=32, seed=0),
    }
    fns[impl]()
    benchmark.group = f"scale|layer-1M|n={W.size}"
    benchmark.extra_info["impl"] = impl
    out = benchmark(fns[impl])
    if impl == "jvp-3-directions":
        assert np.allclose(out, np.tensordot(V, G, 2), rtol=0, atol=TOLERANCE)
    elif impl == "sampled-32-coords":
        cols, idx = out
        assert np.allclose(cols, G.ravel()[idx], rtol=0, atol=TOLERANCE)
    else:
        assert np.isfinite(out)


# --------------------------------------------------------------------------
# Executor overhead on a dense Jacobian (n = 2000, 1 MiB chunks).

def _mix(x):
    return np.tanh(x) * np.sum(x, axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def dask_client():
    pytest.importorskip("distributed")
    with loopback_cluster(n_workers=2) as client:
        yield client


@contextlib.contextmanager
def _threads(request):
    with ThreadPoolExecutor(2) as pool:
        yield pool


#: impl -> context manager factory(request) yielding the executor (None: in-process).
EXECUTORS = {
    "in-process": lambda request: contextlib.nullcontext(None),
    "threads-2": _threads,
    # The module-scoped cluster outlives the test: only borrowed here.
    "dask-local-2": lambda request: contextlib.nullcontext(request.getfixturevalue("dask_client")),
}


@pytest.mark.parametrize("impl", list(EXECUTORS))
def test_executor_overhead(benchmark, impl, request):
    n = 2000
    x = np.linspace(-1, 1, n)
    ref = fastjac.jacobian(_mix, x)
    with EXECUTORS[impl](request) as pool:
        fn = lambda: fastjac.jacobian(_mix, x, executor=pool)  # noqa: E731
        fn()
        benchmark.group = f"scale|executor-mix|n={n}"
        benchmark.extra_info["impl"] = impl
        J = benchmark(fn)
    np.testing.assert_array_equal(J, ref)
