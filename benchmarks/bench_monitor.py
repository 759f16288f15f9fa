"""GradientMonitor overhead on two dense layers, side by side with no monitor.

Workloads (``WORKLOADS``), plain numpy, batch 64, SGD, each training step
computing the loss value and the gradients:

``dense1024x1024-softmax-ce``
    ``Z = W @ X + b`` with ``W`` 1024x1024 (1M parameters), softmax
    cross-entropy;
``dense512x512-least-squares``
    ``W`` 512x512 (262k parameters), ``||W @ X + b - Y||^2 / (2 * batch)``: a
    short step (1-3 ms), where every per-step cost shows.

One benchmark round is ``DEFAULT_EVERY`` training steps, so a monitor at its
defaults does exactly one check per round.  Implementations (``IMPLS``),
in one group per workload and dtype:

``plain``
    the training steps alone;
``screen``
    a monitor that is never due, called with ``loss=`` (the per-step screen:
    ``isfinite(loss)``);
``monitor``
    ``GradientMonitor(loss)`` at its defaults, called with ``loss=`` the
    value the step computed (the documented use);
``screen-no-loss``, ``monitor-no-loss``
    the same without ``loss=``: the screen then reads every gradient every
    step.

They run interleaved in one test (see ``test_training_overhead``), slice
by slice: ``SLICE`` steps of each implementation in turn (the order rotating),
so that every one of them sees the same machine to within a few tens of
milliseconds; on a shared 2-core VM, rounds of 1000 steps measured one after
the other differed by up to 50%.  Each slice is timed in CPU seconds of this
process (``time.process_time``; BLAS runs on one thread), the stricter
measure: work moved to another thread would still count.  The benchmark's
own figure is the CPU time of the 1000 ``monitor`` steps of a round (its
timer, :data:`MONITOR_CLOCK`, advances only while they run), and
``extra_info`` holds the medians of the others and the ratios
``ratio_vs_plain`` (overhead = ratio - 1; the target is <= 1.05),
``screen_ratio_vs_plain`` and the ``*_no_loss`` ones, plus
``round_ratio_median``, the median over rounds of monitor / plain.
``test_memory_1m`` (not timed) checks with tracemalloc that a check
allocates < 10x the parameters.

Run: ``pytest benchmarks/bench_monitor.py -o python_files='bench_*.py'`` (add
``--benchmark-disable`` for a quick correctness pass).
"""
from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pytest

from fastjac.monitor import DEFAULT_EVERY, GradientMonitor

BATCH = 64
DTYPES = ["float64", "float32"]
ROUNDS = 5
SLICE = 10


class SliceClock:
    """A clock that advances only while the ``monitor`` implementation runs.

    pytest-benchmark reads its timer before and after each round; this one
    returns the CPU seconds spent in the monitored slices so far, so the
    round's figure is the monitored steps alone, though the other
    implementations ran between them.
    """

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


MONITOR_CLOCK = SliceClock()


class SoftmaxLayer:
    """Data, loss and gradient of a dense layer with softmax cross-entropy."""

    name = "softmax-ce"

    def __init__(self, n, dtype, seed=0):
        rng = np.random.default_rng(seed)
        self.dtype = np.dtype(dtype)
        self.X = rng.standard_normal((n, BATCH)).astype(dtype)
        self.Y = np.eye(n, dtype=dtype)[:, rng.integers(0, n, BATCH)]
        self.params0 = {"W": (rng.standard_normal((n, n)) * 0.03).astype(dtype),
                        "b": np.zeros((n, 1), dtype)}

    def loss(self, q):
        """Batch-aware: leading axes of W and b broadcast through the matmul."""
        Z = q["W"] @ self.X + q["b"]
        mx = Z.max(axis=-2, keepdims=True)
        lse = np.log(np.exp(Z - mx).sum(axis=-2, keepdims=True)) + mx
        return -np.sum(self.Y * (Z - lse), axis=(-2, -1)) / BATCH

    def step(self, q):
        """``(loss value, gradients)`` from one forward and backward pass."""
        Z = q["W"] @ self.X + q["b"]
        Z -= Z.max(axis=0)
        e = np.exp(Z)
        s = e.sum(axis=0)
        value = float(np.sum(np.log(s)) - np.sum(self.Y * Z)) / BATCH
        dZ = (e / s) - self.Y
        dZ *= self.dtype.type(1.0 / BATCH)
        return value, {"W": dZ @ self.X.T, "b": dZ.sum(axis=1, keepdims=True)}


class LeastSquaresLayer:
    """Data, loss and gradient of a dense layer fitted by least squares."""

    name = "least-squares"

    def __init__(self, n, dtype, seed=0):
        rng = np.random.default_rng(seed)
        self.dtype = np.dtype(dtype)
        self.X = rng.standard_normal((n, BATCH)).astype(dtype)
        W_true = rng.standard_normal((n, n)) / np.sqrt(n)
        self.Y = (W_true @ self.X + 0.1 * rng.standard_normal((n, BATCH))).astype(dtype)
        self.params0 = {"W": (rng.standard_normal((n, n)) * 0.01).astype(dtype),
                        "b": np.zeros((n, 1), dtype)}

    def loss(self, q):
        R = q["W"] @ self.X + q["b"] - self.Y
        return 0.5 * np.sum(R * R, axis=(-2, -1)) / BATCH

    def step(self, q):
        R = q["W"] @ self.X + q["b"] - self.Y
        value = 0.5 * float(np.vdot(R, R)) / BATCH
        R *= self.dtype.type(1.0 / BATCH)
        return value, {"W": R @ self.X.T, "b": R.sum(axis=1, keepdims=True)}


#: Workload -> (layer class, n).
WORKLOADS = {
    "dense1024x1024-softmax-ce": (SoftmaxLayer, 1024),
    "dense512x512-least-squares": (LeastSquaresLayer, 512),
}

#: Implementation -> (makes its monitor from the layer, or None; passes loss=).
IMPLS = {
    "plain": (None, False),
    "screen": (lambda layer: _never_due(layer), True),
    "monitor": (lambda layer: GradientMonitor(layer.loss, on_fail="raise", seed=0), True),
    "screen-no-loss": (lambda layer: _never_due(layer), False),
    "monitor-no-loss": (lambda layer: GradientMonitor(layer.loss, on_fail="raise", seed=0), False),
}


def _never_due(layer):
    screen = GradientMonitor(layer.loss, every=10 ** 9, on_fail="raise")
    screen._last_check = -1  # never due: the screen alone
    return screen


def _run(layer, params, monitor, start, steps, with_loss, lr=0.1):
    lr = layer.dtype.type(lr)
    for step in range(start, start + steps):
        value, g = layer.step(params)
        if monitor is not None:
            if with_loss:
                monitor(step, params, g, loss=value)
            else:
                monitor(step, params, g)
        params["W"] -= lr * g["W"]
        params["b"] -= lr * g["b"]
    return params


def _fresh(layer):
    return {k: v.copy() for k, v in layer.params0.items()}


@pytest.mark.benchmark(timer=MONITOR_CLOCK)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("workload", list(WORKLOADS))
def test_training_overhead(benchmark, workload, dtype):
    """Paired A/B, slice by slice: every round runs ``DEFAULT_EVERY`` steps of
    every implementation, ``SLICE`` steps of each in turn."""
    cls, n = WORKLOADS[workload]
    layer = cls(n, dtype)
    params = {impl: _fresh(layer) for impl in IMPLS}
    monitors = {impl: make(layer) if make else None for impl, (make, _) in IMPLS.items()}
    for impl in IMPLS:  # warm: BLAS, the engine's batch probe (remembered), page faults
        _run(layer, params[impl], monitors[impl], 0, 2, IMPLS[impl][1])
    order = list(IMPLS)
    start = [DEFAULT_EVERY]  # each round starts on a check step
    seconds = {impl: [] for impl in IMPLS}

    def one_round():
        spent = dict.fromkeys(IMPLS, 0.0)
        for k, lo in enumerate(range(0, DEFAULT_EVERY, SLICE)):
            for impl in order[k % len(order):] + order[:k % len(order)]:
                t0 = time.process_time()
                _run(layer, params[impl], monitors[impl], start[0] + lo, SLICE, IMPLS[impl][1])
                dt = time.process_time() - t0
                spent[impl] += dt
                if impl == "monitor":
                    MONITOR_CLOCK.now += dt
        start[0] += DEFAULT_EVERY
        for impl, t in spent.items():
            seconds[impl].append(t)

    benchmark.group = f"monitor|{workload}|batch={BATCH}|{dtype}|n={n * n + n}"
    benchmark.extra_info["impl"] = "monitor"
    benchmark.extra_info["every"] = DEFAULT_EVERY
    benchmark.extra_info["timer"] = "process_time, monitored slices only"
    benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1, warmup_rounds=0)
    medians = {impl: float(np.median(s)) for impl, s in seconds.items()}
    plain = medians["plain"]
    if seconds["plain"]:
        for impl, key in (("plain", "plain"), ("screen", "screen"),
                          ("screen-no-loss", "screen_no_loss"),
                          ("monitor-no-loss", "monitor_no_loss")):
            benchmark.extra_info[f"{key}_median"] = medians[impl]
        for impl, key in (("monitor", "ratio_vs_plain"), ("screen", "screen_ratio_vs_plain"),
                          ("screen-no-loss", "screen_no_loss_ratio_vs_plain"),
                          ("monitor-no-loss", "monitor_no_loss_ratio_vs_plain")):
            benchmark.extra_info[key] = round(medians[impl] / plain, 4)
        benchmark.extra_info["round_ratio_median"] = round(float(np.median(
            np.array(seconds["monitor"]) / np.array(seconds["plain"]))), 4)

    # Correct: training happened, every check passed, the monitor changed nothing.
    assert all(np.all(np.isfinite(p["W"])) for p in params.values())
    for impl in ("monitor", "monitor-no-loss"):
        checks = [r for r in monitors[impl].history if r.kind == "check"]
        assert len(checks) >= 2 and all(r.passed for r in checks)
    ref = _run(layer, _fresh(layer), None, 0, 2, False)
    twin = _run(layer, _fresh(layer), GradientMonitor(layer.loss, every=1, on_fail="raise"), 0, 2,
                True)
    assert all(np.array_equal(ref[k], twin[k]) for k in ref)


@pytest.mark.parametrize("dtype", DTYPES)
def test_memory_1m(dtype):
    """Not timed: a check allocates O(size of params), under 10x their bytes."""
    layer = SoftmaxLayer(1024, dtype)
    params = layer.params0
    _, g = layer.step(params)
    monitor = GradientMonitor(layer.loss, every=1, on_fail="raise", seed=0)
    monitor(0, params, g)  # warm: the batch probe
    pbytes = sum(a.nbytes for a in params.values())
    tracemalloc.start()
    try:
        monitor(1, params, g)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # A copy of the params, 2 directions and the probe, a perturbed block.
    assert peak < 10 * pbytes, f"peak {peak / pbytes:.1f}x the parameter bytes"
