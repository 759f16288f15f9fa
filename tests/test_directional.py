"""Directional and sampled derivatives: jvp, vjp, project, sampled_jacobian."""
from __future__ import annotations

import numpy as np
import pytest

import fastjac
from fastjac.directional import project, sampled_jacobian_with_info
from fastjac.engine import jacobian_with_info, jvp_with_info
from fastjac.stencils import STENCILS

from counting import Counting
from error_model import ULPS_PER_OP, roundoff_bound, truncation_bound

EPS = np.finfo(np.float64).eps
CENTRAL = STENCILS[("central", 2)]


def bound_along(t, dmax3, f_err, move_err):
    """Central-difference error bound of ``d/dt g(0)`` with step ``t``.

    Truncation from ``|g'''| <= dmax3``; round-off from the evaluation error
    ``f_err`` plus the change ``move_err`` caused by rounding the perturbed point.
    """
    return truncation_bound(CENTRAL, t, dmax3) + roundoff_bound(CENTRAL, t, f_err + move_err)


class SinMix:
    """``f(x) = A @ sin(x.ravel())`` reshaped: along ``v``, ``|d^k f_i/dt^k| <=
    sum_j |A_ij| |v_j|**k``.  Accepts leading batch axes."""

    def __init__(self, rng, x_shape, out_shape):
        self.x_shape, self.out_shape = x_shape, out_shape
        self.A = rng.uniform(-1, 1, (int(np.prod(out_shape)), int(np.prod(x_shape))))

    def __call__(self, x):
        lead = x.shape[: x.ndim - len(self.x_shape)]
        return (np.sin(x.reshape(lead + (-1,))) @ self.A.T).reshape(lead + self.out_shape)

    def exact(self, x):
        return (self.A * np.cos(x.ravel())[None, :]).reshape(self.out_shape + self.x_shape)

    def bound(self, w, v, t, x):
        """Bound for ``<w, f>`` differentiated along ``v`` with step ``t``."""
        Aw = np.abs(np.ravel(w)) @ np.abs(self.A)          # (n,)
        v, x = np.abs(np.ravel(v)), np.abs(np.ravel(x))
        f_err = ULPS_PER_OP * EPS * (len(x) + 2) * Aw.sum()  # a few ulps per term
        return bound_along(t, Aw @ v ** 3, f_err, EPS * Aw @ (x + 2 * t * v))


def test_jvp_many_directions_is_one_batched_call(rng):
    f = SinMix(rng, (3, 4), (5,))
    x = rng.uniform(-1, 1, (3, 4))
    V = rng.normal(size=(6, 3, 4))
    counted = Counting(f, 2)
    jv, info = jvp_with_info(counted, x, V)
    assert jv.shape == (6, 5)
    # The first call probes: f(x), one batch of 12 points and 3 verifying single calls.
    assert info.nfev == counted.points == 1 + 2 * 6 + 3 and info.ncalls == counted.calls == 5
    counted.reset()
    jv2, info2 = jvp_with_info(counted, x, V)  # the plan is reused: f(x) + one batch
    np.testing.assert_array_equal(jv2, jv)
    assert info2.nfev == counted.points == 1 + 2 * 6 and info2.ncalls == counted.calls == 2
    exact = np.einsum("oij,kij->ko", f.exact(x), V)
    for k in range(6):
        for i in range(5):
            assert abs(jv[k, i] - exact[k, i]) <= f.bound(np.eye(5)[i], V[k], info.step[k], x)
    single = fastjac.jvp(f, x, V[2])
    # Same t and points; only BLAS blocking of the batch may reorder sums:
    # a few ulps of |f| (<= 12) over t ~ 1e-6: 1e-8.
    np.testing.assert_allclose(single, jv[2], rtol=0, atol=1e-8)


def test_vjp_equals_u_transpose_J(rng):
    f = SinMix(rng, (4,), (2, 3))
    x = rng.uniform(-1, 1, 4)
    U = rng.normal(size=(3, 2, 3))
    got = fastjac.vjp(f, x, U[0])
    many = fastjac.vjp(f, x, U)
    assert got.shape == (4,) and many.shape == (3, 4)
    h = jacobian_with_info(f, x)[1].step  # vjp is a gradient: the same per-element steps
    for k in range(3):
        exact = np.tensordot(U[k], f.exact(x), 2)
        for j in range(4):
            assert abs(many[k, j] - exact[j]) <= f.bound(U[k], np.eye(4)[j], h[j], x)
    np.testing.assert_allclose(got, many[0], rtol=0, atol=1e-8)  # as above: sum order only


def test_project_is_u_J_v(rng):
    f = SinMix(rng, (5,), (3,))
    x = rng.uniform(-1, 1, 5)
    u, V = rng.normal(size=3), rng.normal(size=(4, 5))
    got = project(f, x, u, V)
    jv, info = jvp_with_info(f, x, V)
    assert got.shape == (4,)
    np.testing.assert_array_equal(got, jv @ u)
    exact = u @ f.exact(x) @ V.T
    for k in range(4):
        assert abs(got[k] - exact[k]) <= f.bound(u, V[k], info.step[k], x)
    scalar = project(f, x, u, V[0])
    assert isinstance(scalar, float) and abs(scalar - got[0]) <= 1e-8  # sum order only


def test_sampled_jacobian_returns_the_chosen_columns(rng):
    f = SinMix(rng, (4, 5), (3,))
    x = rng.uniform(-1, 1, (4, 5))
    J = fastjac.jacobian(f, x).reshape(3, 20)
    cols, idx = fastjac.sampled_jacobian(f, x, [3, 17, 0])
    assert cols.shape == (3, 3) and idx.tolist() == [3, 17, 0]
    np.testing.assert_array_equal(cols, J[:, idx])  # same steps, same points
    cols2, idx2 = fastjac.sampled_jacobian(f, x, (np.array([0, 3]), np.array([3, 2])))
    assert idx2.tolist() == [3, 17]
    np.testing.assert_array_equal(cols2, J[:, idx2])
    c1, i1 = fastjac.sampled_jacobian(f, x, size=7, seed=3)
    c2, i2 = fastjac.sampled_jacobian(f, x, size=7, seed=3)
    assert len(set(i1.tolist())) == 7 and np.array_equal(i1, i2) and np.array_equal(c1, c2)
    np.testing.assert_array_equal(c1, J[:, i1])


def test_sampled_errors():
    with pytest.raises(ValueError, match="`size` must be an int"):
        fastjac.sampled_jacobian(np.sin, np.zeros(3), size=5)
    with pytest.raises(ValueError, match="`index` must lie in"):
        fastjac.sampled_jacobian(np.sin, np.zeros(3), [3])
    with pytest.raises(TypeError, match="`index` must be a 1-d array"):
        fastjac.sampled_jacobian(np.sin, np.zeros(3), [0.5])
    with pytest.raises(ValueError, match="`u` must have the shape"):
        fastjac.vjp(np.sin, np.zeros(3), np.zeros(4))


class SoftmaxLayer:
    """Mean softmax cross-entropy of ``Z = W @ X + b`` (features x samples)."""

    def __init__(self, rng, F=1024, B=64):
        self.W = rng.normal(0, 1 / np.sqrt(F), (F, F))
        self.X = rng.normal(size=(F, B))
        self.b = rng.normal(0, 0.1, (F, 1))
        self.Y = np.eye(F)[:, rng.integers(0, F, B)]
        self.B = B

    def loss(self, W):  # batched over leading axes of W
        Z = W @ self.X + self.b
        Z = Z - Z.max(axis=-2, keepdims=True)
        logp = Z - np.log(np.exp(Z).sum(axis=-2, keepdims=True))
        return -(self.Y * logp).sum(axis=(-2, -1)) / self.B

    def grad(self):
        Z = self.W @ self.X + self.b
        P = np.exp(Z - Z.max(axis=0))
        P /= P.sum(axis=0)
        return (P - self.Y) @ self.X.T / self.B


def test_million_parameter_layer_sampled_and_directional():
    rng = np.random.default_rng(7)
    layer = SoftmaxLayer(rng)
    G = layer.grad()
    counted = Counting(layer.loss, 2)
    cols, idx, info = sampled_jacobian_with_info(counted, layer.W, size=32, seed=0)
    # f(x), 2 points per column, and the probe's single calls: independent of the 1M parameters.
    assert info.nfev == counted.points <= 1 + 2 * 32 + 3
    V = rng.normal(size=(3,) + layer.W.shape)
    counted.reset()
    jv, jinfo = jvp_with_info(counted, layer.W, V)
    assert jinfo.nfev == counted.points == 1 + 2 * 3  # the plan is reused
    # The loss sums F*B terms of size <= |L|/B, a few ulps each: f_err.
    L = float(layer.loss(layer.W))
    f_err = ULPS_PER_OP * EPS * layer.W.size * abs(L) / layer.B
    # Along a direction D = V X per sample, softmax-CE has |third derivative|
    # <= range(D)^3 (a third cumulant), averaged over samples.  A coordinate
    # direction e_ij gives D = X_j: range <= 2 max|X|; and |dL/dW| <= max|X|.
    xmax, wabs = np.abs(layer.X).max(), np.abs(layer.W)
    for k, j in enumerate(idx):
        move = EPS * xmax * (wabs.ravel()[j] + 2 * info.step[k])
        assert abs(cols[k] - G.ravel()[j]) <= bound_along(info.step[k], (2 * xmax) ** 3,
                                                            f_err, move)
    for k in range(3):
        D = V[k] @ layer.X
        d3 = float(np.mean((D.max(axis=0) - D.min(axis=0)) ** 3))
        move = EPS * float(np.abs(G).ravel() @ (wabs + 2 * jinfo.step[k] * np.abs(V[k])).ravel())
        assert abs(jv[k] - np.tensordot(V[k], G, 2)) <= bound_along(jinfo.step[k], d3, f_err, move)
