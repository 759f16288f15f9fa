"""fastjac.nn: dispatched kernels vs plain numpy vs numeric Jacobians.

Groups ``nn|{op}|{what}|B={B}|n={n}`` put side by side, for one op and
size: ``kernel`` (the dispatched fastjac.nn call), ``numpy`` (the
notebook-style numpy expression), ``loop`` (fastjac.reference's
element-by-element numeric Jacobian) and ``engine`` (fastjac.jacobian).
``nn|compile|cold`` and ``nn|compile|cached`` time a fresh process that
imports fastjac.nn and runs the softmax-Jacobian kernel, with an empty or a
warm NUMBA_CACHE_DIR.

Run: ``pytest benchmarks/bench_nn.py`` (add ``--benchmark-disable`` for a
quick correctness pass).
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from fastjac import nn
from fastjac.reference import numeric_jacobian

BATCHES = [1, 64, 1024]
WIDTHS = [10, 64, 512, 4096]
SIZES = [(B, n) for B in BATCHES for n in WIDTHS]
DT = np.float64
LOOP_BUDGET_S = 2.0
J_BUDGET_BYTES = 1 << 30


def _ulp_tol(n):
    """A few ulps per operation times the length of the longest sum (n)."""
    return 16 * n * np.finfo(DT).eps


def _data(B, n, seed=0):
    r = np.random.default_rng(seed)
    shape = (n,) if B == 1 else (n, B)
    z = r.standard_normal(shape) * 3
    g = r.standard_normal(shape)
    Y = np.zeros(shape)
    if B == 1:
        Y[r.integers(n)] = 1
    else:
        Y[r.integers(0, n, B), np.arange(B)] = 1
    return z, g, Y


# ------------------------------------------------------------- numpy references
def np_softmax(Z):
    Z = Z - np.max(Z, axis=0, keepdims=True)
    e = np.exp(Z)
    return e / np.sum(e, axis=0, keepdims=True)


def np_softmax_jac(Z):
    A = np_softmax(Z)
    if A.ndim == 1:
        return np.diag(A) - np.outer(A, A)
    AT = A.T
    return AT[:, :, None] * np.eye(A.shape[0]) - AT[:, :, None] * AT[:, None, :]


def np_softmax_vjp(Z, G):
    A = np_softmax(Z)
    return A * (G - np.sum(G * A, axis=0, keepdims=True))


def np_log_softmax_vjp(Z, G):
    return G - np_softmax(Z) * np.sum(G, axis=0, keepdims=True)


def np_sigmoid_vjp(Z, G):
    A = 1 / (1 + np.exp(-Z))
    return G * A * (1 - A)


def np_tanh_vjp(Z, G):
    A = np.tanh(Z)
    return G * (1 - A ** 2)


def np_relu_vjp(Z, G):
    return G * (Z > 0)


def np_sce(Y, Z):
    m = Y.shape[1] if Y.ndim == 2 else 1
    A = np_softmax(Z)
    loss = -np.sum(Y * np.log(np.maximum(A, 1e-10))) / m
    return loss, (A - Y) / m


# op -> (kernel call, numpy call, J-bytes of one result)
OPS = {
    "softmax|jacobian": (lambda z, g, Y: nn.softmax.jacobian(z), lambda z, g, Y: np_softmax_jac(z)),
    "softmax|forward": (lambda z, g, Y: nn.softmax.forward(z), lambda z, g, Y: np_softmax(z)),
    "softmax|vjp": (lambda z, g, Y: nn.softmax.vjp(z, g), lambda z, g, Y: np_softmax_vjp(z, g)),
    "log_softmax|vjp": (lambda z, g, Y: nn.log_softmax.vjp(z, g), lambda z, g, Y: np_log_softmax_vjp(z, g)),
    "sigmoid|vjp": (lambda z, g, Y: nn.sigmoid.vjp(z, g), lambda z, g, Y: np_sigmoid_vjp(z, g)),
    "tanh|vjp": (lambda z, g, Y: nn.tanh.vjp(z, g), lambda z, g, Y: np_tanh_vjp(z, g)),
    "relu|vjp": (lambda z, g, Y: nn.relu.vjp(z, g), lambda z, g, Y: np_relu_vjp(z, g)),
    "softmax_cross_entropy|value_and_grad": (
        lambda z, g, Y: nn.softmax_cross_entropy.value_and_grad(Y, z),
        lambda z, g, Y: np_sce(Y, z)),
}


def _close(got, ref, n):
    if isinstance(ref, tuple):
        for a, b in zip(got, ref):
            _close(a, b, n)
        return
    np.testing.assert_allclose(np.asarray(got), np.asarray(ref), atol=_ulp_tol(n), rtol=_ulp_tol(n))


@pytest.mark.parametrize("B,n", SIZES, ids=[f"B{B}-n{n}" for B, n in SIZES])
@pytest.mark.parametrize("op", list(OPS))
@pytest.mark.parametrize("what", ["kernel", "numpy"])
def test_nn_op(benchmark, op, what, B, n):
    if op == "softmax|jacobian" and B * n * n * 8 > J_BUDGET_BYTES // 2:
        pytest.skip(f"J of shape ({B}, {n}, {n}) needs {B * n * n * 8 / 2**30:.1f} GiB (> 0.5 GiB budget)")
    z, g, Y = _data(B, n)
    kern, ref = OPS[op]
    fn = kern if what == "kernel" else ref
    expect = ref(z, g, Y)
    _close(kern(z, g, Y), expect, n)  # warms the JIT and checks the kernel
    benchmark.group = f"nn|{op}|B={B}|n={n}"
    benchmark.name = f"nn|{op}|{what}|B={B}|n={n}"
    result = benchmark(fn, z, g, Y)
    _close(result, expect, n)


# ------------------------------------------------------------- numeric Jacobians
def _loop_cost(B, n):
    """Seconds for the element loop: 2 n B calls of a ~(5 us + 10 ns/elem) f."""
    return 2 * n * B * (5e-6 + n * B * 1e-8)


NUM_OPS = {
    # op -> (f for the loop/engine at the sample z, analytic result, how to compare)
    "softmax|jacobian": "J",
    "softmax_cross_entropy|value_and_grad": "grad",
}


@pytest.mark.parametrize("B,n", SIZES, ids=[f"B{B}-n{n}" for B, n in SIZES])
@pytest.mark.parametrize("op", list(NUM_OPS))
@pytest.mark.parametrize("what", ["loop", "engine"])
def test_nn_numeric(benchmark, op, what, B, n):
    size = n * B
    out_size = size if op.startswith("softmax|") else 1
    if out_size * size * 8 > J_BUDGET_BYTES:
        pytest.skip(f"the full Jacobian ({out_size} x {size}) would need > 1 GiB")
    if _loop_cost(B, n) > LOOP_BUDGET_S:
        pytest.skip(f"element loop over {size} inputs would take ~{_loop_cost(B, n):.0f} s (> {LOOP_BUDGET_S} s)")
    z, g, Y = _data(B, n)
    if op == "softmax|jacobian":
        def f(x):
            return np_softmax(x) if x.ndim == z.ndim else np.moveaxis(np_softmax(np.moveaxis(x, 0, -1)), -1, 0)
        analytic = nn.softmax.jacobian(z)
    else:
        def f(x):
            if x.ndim == z.ndim:
                return np_sce(Y, x)[0]
            return np.array([np_sce(Y, xi)[0] for xi in x])
        analytic = nn.softmax_cross_entropy.jacobian(Y, z)
    if what == "loop":
        fn = lambda: numeric_jacobian(z, f, 1e-4)  # noqa: E731
    else:
        fastjac = pytest.importorskip("fastjac")
        if not hasattr(fastjac, "jacobian"):
            pytest.skip("fastjac.jacobian (the engine) is not available")
        fn = lambda: np.asarray(fastjac.jacobian(f, z))  # noqa: E731
    benchmark.group = f"nn|{op}|B={B}|n={n}"
    benchmark.name = f"nn|{op}|{what}|B={B}|n={n}"
    J = benchmark.pedantic(fn, rounds=1 if _loop_cost(B, n) > 0.3 else 3, iterations=1, warmup_rounds=0)
    # central differences, h=1e-4 (loop) or ~eps^(1/3) (engine): truncation
    # h^2/6 |f'''| + roundoff eps |f| / h, |f'''| = O(1) for softmax and CE
    tol = 2 * (1e-8 / 6 + np.finfo(DT).eps * 10 / 1e-4)
    if op == "softmax|jacobian" and B > 1:
        for b in (0, B - 1):
            np.testing.assert_allclose(J[:, b, :, b], analytic[b], atol=tol)
    else:
        np.testing.assert_allclose(J.reshape(analytic.shape), analytic, atol=tol)


# ------------------------------------------------------------- compile / cache
_SNIPPET = ("import numpy as np; from fastjac import nn; z = np.ones((8, 4)); "
            "J = nn.softmax.jacobian(z, backend='numba'); "
            "v = nn.softmax.vjp(z, z, backend='numba'); "
            "assert abs(J[0, 0, 0] - (1/8 - 1/64)) < 1e-12; print('ok')")


def _run(cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    r = subprocess.run([sys.executable, "-c", _SNIPPET], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
    return r


def test_nn_compile_cold(benchmark, tmp_path):
    dirs = iter(str(tmp_path / f"c{i}") for i in range(10))
    benchmark.group = "nn|compile|cold"
    benchmark.pedantic(lambda: _run(next(dirs)), rounds=2, iterations=1, warmup_rounds=0)


def test_nn_compile_cached(benchmark, tmp_path):
    cache = str(tmp_path / "warm")
    _run(cache)  # populate
    cached = [f for _, _, files in os.walk(cache) for f in files if f.endswith(".nbi")]
    assert cached, "nothing was cached"
    benchmark.group = "nn|compile|cached"
    benchmark.pedantic(lambda: _run(cache), rounds=3, iterations=1, warmup_rounds=0)
