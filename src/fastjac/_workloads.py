"""The engine benchmark workloads: batch-aware versions of the notebook's functions.

Shared by ``benchmarks/bench_engine.py`` and ``fastjac bench``, so that the
command-line numbers and the pytest-benchmark numbers measure the same thing.
Each workload builds ``(f, x, exact_jacobian)`` for a size ``n`` (the number
of inputs); ``f`` accepts one point or a leading batch axis.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

__all__ = ["Workload", "WORKLOADS", "make"]


def _softmax_last(z):
    z = z - np.max(z, axis=-1, keepdims=True)
    e = np.exp(z)
    return e / np.sum(e, axis=-1, keepdims=True)


def _softmax_features(Z):
    # Column-major as in the notebook: features on axis -2, samples on axis -1.
    Z = Z - np.max(Z, axis=-2, keepdims=True)
    e = np.exp(Z)
    return e / np.sum(e, axis=-2, keepdims=True)


def _sigmoid(n, rng):
    x = rng.normal(size=n)
    a = 1 / (1 + np.exp(-x))
    return (lambda z: 1 / (1 + np.exp(-z))), x, np.diag(a * (1 - a))


def _tanh(n, rng):
    x = rng.normal(size=n)
    return np.tanh, x, np.diag(1 - np.tanh(x) ** 2)


def _softmax(n, rng):
    x = rng.normal(size=n)
    a = _softmax_last(x)
    return _softmax_last, x, np.diag(a) - np.outer(a, a)


def _softmax_ce(n, rng):
    x = rng.normal(size=n)
    y = _softmax_last(rng.normal(size=n))

    def f(z):
        return -np.sum(y * np.log(_softmax_last(z)), axis=-1)

    return f, x, _softmax_last(x) - y


def _dense_shape(n):
    k = 10 if n >= 100 else 2
    return k, n // k


def _dense_ce(n, rng):
    """Cross-entropy of one dense layer w.r.t. W (k x d, n = k*d)."""
    k, d = _dense_shape(n)
    W, x, b = rng.normal(size=(k, d)) / np.sqrt(d), rng.normal(size=d), rng.normal(size=k)
    y = _softmax_last(rng.normal(size=k))

    def f(W):
        return -np.sum(y * np.log(_softmax_last(W @ x + b)), axis=-1)

    a = _softmax_last(W @ x + b)
    return f, W, np.outer(a - y, x)


def _batched_dense(n, rng, m=16):
    """Mean cross-entropy of a dense layer over a batch, Z = W @ X + b (column-major)."""
    k, d = _dense_shape(n)
    W, X, b = rng.normal(size=(k, d)) / np.sqrt(d), rng.normal(size=(d, m)), rng.normal(size=(k, 1))
    Y = _softmax_features(rng.normal(size=(k, m)))

    def f(W):
        A = _softmax_features(W @ X + b)
        return -np.sum(Y * np.log(np.maximum(A, 1e-10)), axis=(-2, -1)) / m

    A = _softmax_features(W @ X + b)
    return f, W, ((A - Y) / m) @ X.T


@dataclass(frozen=True)
class Workload:
    name: str
    build: Callable
    description: str


WORKLOADS = {w.name: w for w in [
    Workload("sigmoid", _sigmoid, "elementwise sigmoid, J diagonal"),
    Workload("tanh", _tanh, "elementwise tanh, J diagonal"),
    Workload("softmax", _softmax, "softmax of a vector, J dense"),
    Workload("softmax-ce", _softmax_ce, "cross-entropy of softmax, gradient"),
    Workload("dense-ce", _dense_ce, "cross-entropy of a dense layer w.r.t. W"),
    Workload("batched-dense", _batched_dense, "batch-mean cross-entropy of a dense layer w.r.t. W"),
]}


def make(name: str, n: int, seed: int = 0):
    """``(f, x, J_exact)`` for workload ``name`` with ``n`` inputs."""
    if name not in WORKLOADS:
        raise ValueError(f"`workload` must be one of {sorted(WORKLOADS)}; got {name!r}.")
    return WORKLOADS[name].build(n, np.random.default_rng(seed))
