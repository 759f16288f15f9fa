"""``nfev`` counts every point f saw: probes, guards, second opinions and searches included.

Each entry point runs twice (cold: the probe; warm: the cached plan) on a
function wrapped to count the points it is called at, batches included.
"""
from __future__ import annotations

import numpy as np
import pytest

import fastjac
from fastjac.directional import sampled_jacobian_with_info
from fastjac.engine import jacobian_with_info, jvp_with_info

from counting import Counting

X = np.linspace(-1, 1, 12)
D = np.diag(np.cos(X))


def _sin():
    return Counting(np.sin, 1)


def _columns():
    # Column-major: batches only as trailing columns.
    return Counting(lambda z: np.sin(z) * np.sum(z ** 2, axis=0), 1, trailing=True)


def _loss():
    return Counting(lambda z: np.sum(np.sin(z), axis=-1), 1)


CALLS = {
    "jacobian_with_info": (_sin, lambda f: jacobian_with_info(f, X)[1].nfev),
    "jacobian_with_info-trailing": (_columns, lambda f: jacobian_with_info(f, X)[1].nfev),
    "jacobian_with_info-loop": (_sin, lambda f: jacobian_with_info(f, X, vectorized=False)[1].nfev),
    "jvp_with_info": (_sin, lambda f: jvp_with_info(f, X, np.ones((3, 12)))[1].nfev),
    "sampled_jacobian": (_sin, lambda f: sampled_jacobian_with_info(f, X, [1, 4, 7])[2].nfev),
    "structured": (_sin, lambda f: jacobian_with_info(f, X, sparsity="diagonal")[1].nfev),
    "check_jacobian": (_sin, lambda f: fastjac.check_jacobian(f, X, D).nfev),
    "check_jacobian-bug": (_sin, lambda f: fastjac.check_jacobian(f, X, 2 * D).nfev),
    "check_jacobian-directional": (_sin, lambda f: fastjac.check_jacobian(
        f, X, D, mode="sampled+directional").nfev),
    "check_grad": (_loss, lambda f: fastjac.check_grad(f, X, np.cos(X)).nfev),
    "check_grad-localised": (_loss, lambda f: fastjac.check_grad(
        f, np.linspace(-1, 1, 300), np.cos(np.linspace(-1, 1, 300)) * (
            1 + 0.5 * (np.arange(300) == 7))).nfev),
    "check_vjp": (_sin, lambda f: fastjac.check_vjp(f, X, lambda u: u * np.cos(X)).nfev),
    "check_jvp": (_sin, lambda f: fastjac.check_jvp(f, X, lambda v: v * np.cos(X)).nfev),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_nfev_counts_every_point(name):
    make, call = CALLS[name]
    f = make()
    for _ in range(2):  # cold (the probe), then warm (the cached plan)
        f.reset()
        assert call(f) == f.points, name


def test_check_backward_counts_forward_points():
    calls = {"points": 0}

    def forward(X, W):
        calls["points"] += W.size // 6  # a batch of k points stacks k copies of W
        return X @ W, (X, W)

    def backward(dout, cache):
        X, W = cache
        return dout @ W.T, X.T @ dout

    X, W = np.ones((5, 3)) + np.eye(5, 3), np.arange(6.0).reshape(3, 2)
    calls["points"] = 0
    r = fastjac.check_backward(forward, backward, X, W)
    # forward ran once for the cache outside the count; every other point is counted.
    assert r.nfev == calls["points"] - 1
