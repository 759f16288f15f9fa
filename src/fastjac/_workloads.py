"""The engine benchmark workloads and the implementations timed on them.

Shared by ``benchmarks/bench_engine.py`` and ``fastjac bench``, so that the
command-line numbers and the pytest-benchmark numbers measure the same thing.

- :data:`WORKLOADS`: batch-aware versions of the notebook's functions.  Each
  builds a :class:`Case` for a size ``n`` (the number of inputs): ``f``
  accepts one point or a leading batch axis, and ``exact`` is the analytic J.
- :data:`IMPLEMENTATIONS`: ``{name: setup}``, in the manner of numbagg's
  ``COMPARISONS`` table.  ``setup(case)`` does all the preparation and
  returns a zero-argument callable that computes the full Jacobian, shaped
  ``f(x).shape + x.shape``; only that callable is timed.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

__all__ = ["Case", "Workload", "WORKLOADS", "IMPLEMENTATIONS", "make", "case"]


@dataclass(frozen=True)
class Case:
    """One workload at one size.

    Attributes
    ----------
    workload : str
    n : int
        Number of inputs, ``x.size``.
    f : callable
        Batch-aware: ``f(x)`` and ``f(stack)`` with a leading batch axis.
    x : ndarray
    exact : ndarray, shape ``f(x).shape + x.shape``
        The analytic Jacobian at ``x``.
    data : dict
        The arrays ``f`` closes over, by name, for rewrites of ``f`` such as
        the benchmarks' jitted single-point versions.
    """

    workload: str
    n: int
    f: Callable
    x: np.ndarray
    exact: np.ndarray
    data: dict = field(default_factory=dict)


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
    return (lambda z: 1 / (1 + np.exp(-z))), x, np.diag(a * (1 - a)), {}


def _tanh(n, rng):
    x = rng.normal(size=n)
    return np.tanh, x, np.diag(1 - np.tanh(x) ** 2), {}


def _softmax(n, rng):
    x = rng.normal(size=n)
    a = _softmax_last(x)
    return _softmax_last, x, np.diag(a) - np.outer(a, a), {}


def _softmax_ce(n, rng):
    x = rng.normal(size=n)
    y = _softmax_last(rng.normal(size=n))

    def f(z):
        return -np.sum(y * np.log(_softmax_last(z)), axis=-1)

    return f, x, _softmax_last(x) - y, {"y": y}


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
    return f, W, np.outer(a - y, x), {"x": x, "b": b, "y": y}


def _batched_dense(n, rng, m=16):
    """Mean cross-entropy of a dense layer over a batch, Z = W @ X + b (column-major)."""
    k, d = _dense_shape(n)
    W, X, b = rng.normal(size=(k, d)) / np.sqrt(d), rng.normal(size=(d, m)), rng.normal(size=(k, 1))
    Y = _softmax_features(rng.normal(size=(k, m)))

    def f(W):
        A = _softmax_features(W @ X + b)
        return -np.sum(Y * np.log(np.maximum(A, 1e-10)), axis=(-2, -1)) / m

    A = _softmax_features(W @ X + b)
    return f, W, ((A - Y) / m) @ X.T, {"X": X, "b": b, "Y": Y, "m": m}


@dataclass(frozen=True)
class Workload:
    name: str
    build: Callable   # (n, rng) -> (f, x, exact J, data f closes over)
    description: str


WORKLOADS = {w.name: w for w in [
    Workload("sigmoid", _sigmoid, "elementwise sigmoid, J diagonal"),
    Workload("tanh", _tanh, "elementwise tanh, J diagonal"),
    Workload("softmax", _softmax, "softmax of a vector, J dense"),
    Workload("softmax-ce", _softmax_ce, "cross-entropy of softmax, gradient"),
    Workload("dense-ce", _dense_ce, "cross-entropy of a dense layer w.r.t. W"),
    Workload("batched-dense", _batched_dense, "batch-mean cross-entropy of a dense layer w.r.t. W"),
]}


def case(name: str, n: int, seed: int = 0) -> Case:
    """The :class:`Case` of workload ``name`` with ``n`` inputs."""
    if name not in WORKLOADS:
        raise ValueError(f"`workload` must be one of {sorted(WORKLOADS)}; got {name!r}.")
    f, x, exact, data = WORKLOADS[name].build(n, np.random.default_rng(seed))
    return Case(name, n, f, x, exact, data)


def make(name: str, n: int, seed: int = 0):
    """``(f, x, J_exact)`` for workload ``name`` with ``n`` inputs."""
    c = case(name, n, seed)
    return c.f, c.x, c.exact


# --------------------------------------------------------------------------
# Implementations: name -> setup(case) -> run, with run() -> J.

def _reference_loop(c):
    from .reference import numeric_jacobian

    return lambda: numeric_jacobian(c.x, c.f)


def _fastjac(**options):
    def setup(c):
        from .engine import jacobian

        return lambda: jacobian(c.f, c.x, **options)

    return setup


def _scipy(c):
    # scipy keeps approx_derivative in scipy.optimize._numdiff (not exported)
    # but documents it; it wants a 1-d x and returns (m, n).
    from scipy.optimize._numdiff import approx_derivative

    shape, out_shape = c.x.shape, np.shape(c.f(c.x))
    flat = c.x.reshape(-1)

    def run():
        J = approx_derivative(lambda v: c.f(v.reshape(shape)), flat, method="3-point")
        return np.asarray(J).reshape(out_shape + shape)

    return run


IMPLEMENTATIONS: dict[str, Callable] = {
    # The notebook's element loop: one f call per perturbed point, step 1e-4.
    "reference-loop": _reference_loop,
    # fastjac.jacobian with default options (vectorized="auto").
    "fastjac": _fastjac(),
    # The batched path forced, and the point-by-point path forced.
    "fastjac-vectorized": _fastjac(vectorized=True),
    "fastjac-loop": _fastjac(vectorized=False),
    # scipy.optimize's approx_derivative, 3-point (central) differences.
    "scipy": _scipy,
}
