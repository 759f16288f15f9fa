"""Gradient checks on scalar losses of 1e4 and 1e5 parameters.

Side by side per workload and size (group ``check|{workload}|n={n}``):

``one-loss-eval``
    A single evaluation of the loss: the unit, so the README can say
    "a verdict in N loss-evaluations' time".
``check_grad-auto``
    ``fastjac.check_grad`` in auto mode (sampled + directional above 64
    parameters), including its guards and second opinions.
``reference-loop``
    The notebook's element loop over every parameter plus its error norm:
    the full check a user would otherwise run.  At 1e4 only, one round
    (it makes 2n loss evaluations); at 1e5 it would take minutes, so it is
    skipped with that reason.
"""
from __future__ import annotations

import numpy as np
import pytest

import fastjac
from fastjac.reference import numeric_jacobian as reference_loop

SIZES = [10_000, 100_000]
IMPLS = ["one-loss-eval", "check_grad-auto", "reference-loop"]
CLASSES, SAMPLES = 10, 16


def _softmax(Z, axis):
    Z = Z - np.max(Z, axis=axis, keepdims=True)
    e = np.exp(Z)
    return e / np.sum(e, axis=axis, keepdims=True)


def dense_ce(n, rng):
    """Mean cross-entropy of a dense softmax layer, as a function of W (10, n/10)."""
    d = n // CLASSES
    W = rng.normal(scale=d ** -0.5, size=(CLASSES, d))
    X = rng.normal(size=(d, SAMPLES))
    b = rng.normal(size=(CLASSES, 1))
    Y = _softmax(rng.normal(size=(CLASSES, SAMPLES)), 0)

    def loss(W):  # W: (10, d) or a batch (k, 10, d)
        A = _softmax(W @ X + b, -2)
        return -np.sum(Y * np.log(A), axis=(-2, -1)) / SAMPLES
    A = _softmax(W @ X + b, 0)
    return loss, W, (A - Y) @ X.T / SAMPLES


def log_cosh(n, rng):
    """A cheap elementwise loss: sum of log cosh."""
    x = rng.normal(size=n)
    return (lambda x: np.sum(np.log(np.cosh(x)), axis=-1)), x, np.tanh(x)


WORKLOADS = {"dense-ce": dense_ce, "log-cosh": log_cosh}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("workload", sorted(WORKLOADS))
def test_check_grad(benchmark, workload, n, impl):
    loss, x, grad = WORKLOADS[workload](n, np.random.default_rng(0))
    benchmark.group = f"check|{workload}|n={n}"
    benchmark.extra_info["impl"] = impl
    if impl == "one-loss-eval":
        value = benchmark(loss, x)
        assert np.isfinite(value)
    elif impl == "check_grad-auto":
        fastjac.check_grad(loss, x, grad, seed=0)  # warm: resolves vectorized="auto" once
        report = benchmark(fastjac.check_grad, loss, x, grad, seed=0)
        assert report.passed and report.kind == "grad/sampled+directional"
        benchmark.extra_info["nfev"] = report.nfev
        # A wrong gradient must fail in the same budget.
        assert not fastjac.check_grad(loss, x, -grad, seed=0).passed
    else:
        if n > 10_000:
            pytest.skip("the element loop makes 2n = 2e5 loss evaluations (minutes); "
                        "benchmarked at n=1e4 only")

        def full_reference_check():
            J = reference_loop(x, loss)
            return float(np.linalg.norm(J - grad))
        err = benchmark.pedantic(full_reference_check, rounds=1, iterations=1)
        # Fixed step 1e-4: truncation h**2/6 |f'''| and round-off EPS |f|/h
        # per entry, summed over n entries, stay far below 1e-4 here.
        assert err < 1e-4
