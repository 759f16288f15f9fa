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

``extra_info["ratio_vs_plain"]`` is the mean time over the ``plain`` mean
(overhead = ratio - 1; the target is <= 1.05).  ``test_memory_1m`` (not
timed) checks with tracemalloc that a check allocates < 10x the parameters.

Run: ``pytest benchmarks/bench_monitor.py`` (add ``--benchmark-disable`` for
a quick correctness pass).
"""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from fastjac.monitor import DEFAULT_EVERY, GradientMonitor

N, BATCH = 1024, 64
IMPLS = ["plain", "screen", "monitor"]
DTYPES = ["float64", "float32"]
_MEANS: dict = {}


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


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("impl", IMPLS)
def test_training_overhead(benchmark, impl, dtype):
    layer = Layer(dtype)
    params = {k: v.copy() for k, v in layer.params0.items()}
    monitor = {"plain": None,
               "screen": GradientMonitor(layer.loss, every=10 ** 9, on_fail="raise"),
               "monitor": GradientMonitor(layer.loss, on_fail="raise", seed=0)}[impl]
    if impl == "screen":
        monitor._last_check = -1  # never due: the screen alone
    # Warm: BLAS, the engine's batch probe (remembered), page faults.
    state = {"start": 0}
    _run(layer, params, monitor, 0, 2)
    state["start"] = DEFAULT_EVERY  # the first timed step is a check step

    def round_():
        _run(layer, params, monitor, state["start"], DEFAULT_EVERY)
        state["start"] += DEFAULT_EVERY

    benchmark.group = f"monitor|dense{N}x{N}-softmax-ce|batch={BATCH}|{dtype}|n={N * N + N}"
    benchmark.extra_info["impl"] = impl
    benchmark.extra_info["every"] = DEFAULT_EVERY
    benchmark.pedantic(round_, rounds=2, iterations=1, warmup_rounds=0)

    # Correct: training happened, the monitor changed nothing and saw no failure.
    assert np.all(np.isfinite(params["W"]))
    if impl == "monitor":
        checks = [r for r in monitor.history if r.kind == "check"]
        assert checks and all(r.passed for r in checks)
        ref = {k: v.copy() for k, v in layer.params0.items()}
        ref = _run(layer, ref, None, 0, 2)
        twin = {k: v.copy() for k, v in layer.params0.items()}
        twin = _run(layer, twin, GradientMonitor(layer.loss, every=1, on_fail="raise"), 0, 2)
        assert all(np.array_equal(ref[k], twin[k]) for k in ref)
    stats = getattr(benchmark, "stats", None)
    mean = getattr(getattr(stats, "stats", None), "mean", None)
    if mean:
        _MEANS[(impl, dtype)] = mean
        base = _MEANS.get(("plain", dtype))
        if base:
            benchmark.extra_info["ratio_vs_plain"] = round(mean / base, 4)


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
