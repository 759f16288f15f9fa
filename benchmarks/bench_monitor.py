"""GradientMonitor overhead on a 1M-parameter layer, side by side with no monitor.

Workload: one dense layer ``Z = W @ X + b`` with ``W`` 1024x1024 (1M
parameters) and softmax cross-entropy, batch 64, plain numpy, SGD.  One
benchmark round is ``DEFAULT_EVERY`` training steps, so with the monitor at
its defaults each round holds exactly one check plus one NaN/inf screen per
step.  Implementations (``extra_info["impl"]``), in one group per dtype:

``plain``
    the training steps alone;
``screen``
    with a monitor that is never due (the per-step NaN/inf screen only);
``monitor``
    with ``GradientMonitor(loss)`` at its default settings.

The three run interleaved in one test (see ``test_training_overhead``):
the benchmark times the monitored rounds, and ``extra_info`` holds the
paired medians of the plain and screen-only rounds and the ratios
``ratio_vs_plain`` (overhead = ratio - 1; the target is <= 1.05) and
``screen_ratio_vs_plain``.  ``test_memory_1m`` (not
timed) checks with tracemalloc that a check allocates < 10x the parameters.

Run: ``pytest benchmarks/bench_monitor.py`` (add ``--benchmark-disable`` for
a quick correctness pass).
"""
from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pytest

from fastjac.monitor import DEFAULT_EVERY, GradientMonitor

N, BATCH = 1024, 64
IMPLS = ["plain", "screen", "monitor"]
DTYPES = ["float64", "float32"]


class Layer:
    """Data, loss and gradient of the 1M-parameter softmax layer."""

    def __init__(self, dtype, seed=0):
        rng = np.random.default_rng(seed)
        self.dtype = np.dtype(dtype)
        self.X = rng.standard_normal((N, BATCH)).astype(dtype)
        self.Y = np.eye(N, dtype=dtype)[:, rng.integers(0, N, BATCH)]
        self.params0 = {"W": (rng.standard_normal((N, N)) * 0.03).astype(dtype),
                        "b": np.zeros((N, 1), dtype)}

    def loss(self, q):
        """Batch-aware: leading axes of W and b broadcast through the matmul."""
        Z = q["W"] @ self.X + q["b"]
        mx = Z.max(axis=-2, keepdims=True)
        lse = np.log(np.exp(Z - mx).sum(axis=-2, keepdims=True)) + mx
        return -np.sum(self.Y * (Z - lse), axis=(-2, -1)) / BATCH

    def grads(self, q):
        Z = q["W"] @ self.X + q["b"]
        e = np.exp(Z - Z.max(axis=0))
        dZ = (e / e.sum(axis=0)) - self.Y
        dZ *= self.dtype.type(1.0 / BATCH)
        return {"W": dZ @ self.X.T, "b": dZ.sum(axis=1, keepdims=True)}


def _run(layer, params, monitor, start, steps, lr=0.1):
    lr = layer.dtype.type(lr)
    for step in range(start, start + steps):
        g = layer.grads(params)
        if monitor is not None:
            monitor(step, params, g)
        params["W"] -= lr * g["W"]
        params["b"] -= lr * g["b"]
    return params


ROUNDS = 3


@pytest.mark.parametrize("dtype", DTYPES)
def test_training_overhead(benchmark, dtype):
    """Paired A/B: every benchmarked round of monitored training is preceded,
    in pedantic's untimed ``setup``, by the same steps with no monitor and
    with the screen only, timed here.  Separate tests minutes apart differed
    by +-5% on this shared VM, more than the effect being measured."""
    layer = Layer(dtype)
    params = {impl: {k: v.copy() for k, v in layer.params0.items()} for impl in IMPLS}
    screen = GradientMonitor(layer.loss, every=10 ** 9, on_fail="raise")
    screen._last_check = -1  # never due: the screen alone
    monitors = {"plain": None, "screen": screen,
                "monitor": GradientMonitor(layer.loss, on_fail="raise", seed=0)}
    for impl in IMPLS:  # warm: BLAS, the engine's batch probe (remembered), page faults
        _run(layer, params[impl], monitors[impl], 0, 2)
    start = {impl: DEFAULT_EVERY for impl in IMPLS}  # each timed round starts on a check step
    seconds = {"plain": [], "screen": []}

    def one_round(impl):
        _run(layer, params[impl], monitors[impl], start[impl], DEFAULT_EVERY)
        start[impl] += DEFAULT_EVERY

    def setup():
        for impl in ("plain", "screen"):
            t0 = time.perf_counter()
            one_round(impl)
            seconds[impl].append(time.perf_counter() - t0)

    benchmark.group = f"monitor|dense{N}x{N}-softmax-ce|batch={BATCH}|{dtype}|n={N * N + N}"
    benchmark.extra_info["impl"] = "monitor"
    benchmark.extra_info["every"] = DEFAULT_EVERY
    benchmark.pedantic(one_round, args=("monitor",), setup=setup, rounds=ROUNDS, iterations=1,
                       warmup_rounds=0)
    plain, screened = float(np.median(seconds["plain"])), float(np.median(seconds["screen"]))
    benchmark.extra_info["plain_median"] = plain
    benchmark.extra_info["screen_median"] = screened
    stats = getattr(getattr(benchmark, "stats", None), "stats", None)
    if stats is not None:
        benchmark.extra_info["ratio_vs_plain"] = round(stats.median / plain, 4)
        benchmark.extra_info["screen_ratio_vs_plain"] = round(screened / plain, 4)

    # Correct: training happened, the monitor changed nothing and saw no failure.
    assert all(np.all(np.isfinite(p["W"])) for p in params.values())
    checks = [r for r in monitors["monitor"].history if r.kind == "check"]
    assert checks and all(r.passed for r in checks)
    ref = _run(layer, {k: v.copy() for k, v in layer.params0.items()}, None, 0, 2)
    twin = _run(layer, {k: v.copy() for k, v in layer.params0.items()},
                GradientMonitor(layer.loss, every=1, on_fail="raise"), 0, 2)
    assert all(np.array_equal(ref[k], twin[k]) for k in ref)


@pytest.mark.parametrize("dtype", DTYPES)
def test_memory_1m(dtype):
    """Not timed: a check allocates O(size of params), under 10x their bytes."""
    layer = Layer(dtype)
    params = layer.params0
    g = layer.grads(params)
    monitor = GradientMonitor(layer.loss, every=1, on_fail="raise", seed=0)
    monitor(0, params, g)  # warm: the batch probe
    pbytes = sum(a.nbytes for a in params.values())
    tracemalloc.start()
    try:
        monitor(1, params, g)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # A copy of the params, 2 directions, <= 4 perturbed copies per loss call.
    assert peak < 10 * pbytes, f"peak {peak / pbytes:.1f}x the parameter bytes"
