"""fastjac.nn: every rule call beside the plain numpy expression, driven by nn.RULES.

For each rule, each method it lists in ``rule.plain`` and each size, two
benchmarks share one group, so that they are measured in the same run:

* group ``nn|{op}|{method}|B={B}|n={n}`` (float64) or
  ``nn|{op}|{method}.float32|B={B}|n={n}``;
* names ``nn|{op}|{method}|kernel|B={B}|n={n}`` (the dispatched call,
  ``backend="auto"``, the fast path where it applies) and
  ``nn|{op}|{method}|numpy|B={B}|n={n}`` (``rule.plain[method]``, the
  notebook-style numpy expression a user would write).

``B`` is the batch size and ``n`` the feature width; ``B = 1`` means one
1-D vector of ``n`` elements.  Inputs come from ``rule.sample``.  Quote
results as ratios of medians within a group (kernel / numpy < 1: the rule
is faster).

``nn|softmax|jacobian|...|loop`` and ``...|engine`` time the same
derivative obtained numerically (``fastjac.reference``'s element loop and
``fastjac.jacobian``) in the softmax-Jacobian and softmax-CE groups.
``nn|compile|cold`` and ``nn|compile|cached`` time a fresh process that
imports fastjac.nn and runs two kernels, with an empty or a warm
``NUMBA_CACHE_DIR``.

Run (under the shared lock): ``flock /tmp/fastjac-bench.lock pytest
benchmarks/bench_nn.py --benchmark-json=benchmarks/results/nn-raw.json``,
then ``python benchmarks/report.py`` to compact and render;
``--benchmark-disable`` is a quick correctness pass.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from fastjac import nn
from fastjac.reference import numeric_jacobian

# (B, n): a sweep of single vectors from 1 to 4096 elements, then batches.
SIZES = [(1, 1), (1, 10), (1, 64), (1, 256), (1, 512), (1, 4096),
         (64, 10), (64, 64), (64, 512), (64, 4096), (1024, 10), (1024, 64), (1024, 512), (1024, 4096)]
# float32 on the sweep and a few batches: enough to see each crossover
SIZES_F32 = [(1, 1), (1, 64), (1, 256), (1, 512), (1, 4096), (64, 64), (64, 512), (1024, 512)]
J_BUDGET_BYTES = 1 << 29  # Jacobian stacks and dense weights above 0.5 GiB are skipped
LOOP_BUDGET_S = 2.0


def _shape(B, n):
    return (n,) if B == 1 else (n, B)


def _cases():
    for name, rule in nn.RULES.items():
        for method in rule.plain:
            for dtype, sizes in ((np.float64, SIZES), (np.float32, SIZES_F32)):
                if dtype is np.float32 and rule.kind == "layer":
                    continue
                for B, n in sizes:
                    for impl in ("kernel", "numpy"):  # back to back: both see the same machine
                        yield pytest.param(name, method, np.dtype(dtype), B, n, impl,
                                           id=f"{name}-{method}-{np.dtype(dtype).name}-B{B}-n{n}-{impl}")


def _too_big(rule, method, B, n, itemsize):
    """Why this size is skipped, or None."""
    if rule.kind == "normalizer" and method == "jacobian" and B * n * n * itemsize > J_BUDGET_BYTES:
        return f"a Jacobian stack of shape ({B}, {n}, {n}) exceeds the {J_BUDGET_BYTES >> 20} MiB budget"
    if rule.kind == "layer" and (n > 512 or B == 1):
        return (f"a dense layer with {n} x {n} weights is a BLAS benchmark, not an nn one" if n > 512 else
                "the notebook's dense layer takes (d, m) batches")
    return None


def _arrays(result):
    return [np.asarray(r, dtype=np.float64) for r in (result if isinstance(result, tuple) else (result,))]


def _close(got, want, n, dtype):
    """Rounding of sums of up to n terms, a few ulps each."""
    tol = 16 * (n + 8) * np.finfo(dtype).eps
    for g, w in zip(_arrays(got), _arrays(want)):
        np.testing.assert_allclose(g, w, rtol=tol, atol=tol)


@pytest.mark.parametrize("name,method,dtype,B,n,impl", list(_cases()))
def test_nn_op(benchmark, name, method, dtype, B, n, impl):
    rule = nn.RULES[name]
    reason = _too_big(rule, method, B, n, dtype.itemsize)
    if reason:
        pytest.skip(reason)
    sample = rule.sample(_shape(B, n), dtype)
    args = sample.vjp_args + (sample.cotangent,) if method == "vjp" else sample.args
    call, plain = getattr(rule, method), rule.plain[method]
    fn = call if impl == "kernel" else plain
    expect = plain(*args)
    _close(call(*args), expect, n, dtype)  # warms the JIT and the fast table, checks the rule
    what = method if dtype == np.float64 else f"{method}.{dtype.name}"
    benchmark.group = f"nn|{name}|{what}|B={B}|n={n}"
    benchmark.name = f"nn|{name}|{what}|{impl}|B={B}|n={n}"
    result = benchmark(fn, *args)
    _close(result, expect, n, dtype)


# ------------------------------------------------------------- numeric Jacobians of the same ops
def _loop_cost(B, n):
    """Seconds for the element loop: 2 n B calls of a ~(5 us + 10 ns/elem) f."""
    return 2 * n * B * (5e-6 + n * B * 1e-8)


NUMERIC = {  # group -> (f of the perturbed input, the analytic result, how to compare)
    "softmax|jacobian": "J",
    "softmax_cross_entropy|value_and_grad": "grad",
}


@pytest.mark.parametrize("B,n", SIZES, ids=[f"B{B}-n{n}" for B, n in SIZES])
@pytest.mark.parametrize("op", list(NUMERIC))
@pytest.mark.parametrize("what", ["loop", "engine"])
def test_nn_numeric(benchmark, op, what, B, n):
    size = n * B
    out_size = size if op.startswith("softmax|") else 1
    if out_size * size * 8 > 2 * J_BUDGET_BYTES:
        pytest.skip(f"the full Jacobian ({out_size} x {size}) would need > 1 GiB")
    if _loop_cost(B, n) > LOOP_BUDGET_S:
        pytest.skip(f"element loop over {size} inputs would take ~{_loop_cost(B, n):.0f} s (> {LOOP_BUDGET_S} s)")
    if op == "softmax|jacobian":
        (z,) = nn.softmax.sample(_shape(B, n)).args

        def f(x):  # the engine perturbs a stack of inputs on a leading axis
            sm = nn.softmax.plain["forward"]
            return sm(x) if x.ndim == z.ndim else np.moveaxis(sm(np.moveaxis(x, 0, -1)), -1, 0)
        analytic = nn.softmax.jacobian(z)
    else:
        Y, z = nn.softmax_cross_entropy.sample(_shape(B, n)).args
        loss = nn.softmax_cross_entropy.plain["forward"]

        def f(x):
            return loss(Y, x) if x.ndim == z.ndim else np.array([loss(Y, xi) for xi in x])
        analytic = nn.softmax_cross_entropy.jacobian(Y, z)
    if what == "loop":
        fn = lambda: numeric_jacobian(z, f, 1e-4)  # noqa: E731
    else:
        import fastjac
        if not hasattr(fastjac, "jacobian"):
            pytest.skip("fastjac.jacobian (the engine) is not available")
        fn = lambda: np.asarray(fastjac.jacobian(f, z))  # noqa: E731
    benchmark.group = f"nn|{op}|B={B}|n={n}"
    benchmark.name = f"nn|{op}|{what}|B={B}|n={n}"
    J = benchmark.pedantic(fn, rounds=1 if _loop_cost(B, n) > 0.3 else 3, iterations=1, warmup_rounds=0)
    # central differences, h = 1e-4 (loop) or ~eps^(1/3) (engine): truncation
    # h^2/6 |f'''| + round-off eps |f| / h, |f'''| = O(1) for softmax and CE
    tol = 2 * (1e-8 / 6 + np.finfo(np.float64).eps * 10 / 1e-4)
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
