"""Many inputs: x as a tuple or dict of arrays on every path."""
from __future__ import annotations

import pickle
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
import pytest

import fastjac
from fastjac._inputs import pack
from fastjac.directional import project

F_IN, F_OUT, B = 4, 3, 5


def dense(W, X, b):
    """The notebook's layer, column-major: features on axis 0, samples on axis 1."""
    return np.tanh(W @ X + b)


def loss(W, X, b):
    Z = dense(W, X, b)
    return np.sum(Z ** 2) / Z.shape[-1]


@pytest.fixture
def point(rng):
    return (rng.normal(size=(F_OUT, F_IN)), rng.normal(size=(F_IN, B)),
            rng.normal(size=(F_OUT, 1)))


def test_three_jacobians_in_one_call(point):
    W, X, b = point
    dW, dX, db = fastjac.jacobian(dense, (W, X, b))
    sep = (fastjac.jacobian(lambda W_: dense(W_, X, b), W),
           fastjac.jacobian(lambda X_: dense(W, X_, b), X),
           fastjac.jacobian(lambda b_: dense(W, X, b_), b))
    for one, alone in zip((dW, dX, db), sep):
        assert one.shape == alone.shape
        # Same points and steps (one working dtype): bitwise up to sum order.
        np.testing.assert_allclose(one, alone, rtol=0, atol=1e-9)
    gW, gX, gb = fastjac.gradient(loss, (W, X, b))
    assert gW.shape == W.shape and gX.shape == X.shape and gb.shape == b.shape
    d = fastjac.gradient(loss, {"W": W, "X": X, "b": b})
    np.testing.assert_array_equal(d["W"], gW)


def test_jvp_vjp_project_with_containers(point, rng):
    W, X, b = point
    V = tuple(rng.normal(size=a.shape) for a in point)
    jv = fastjac.jvp(dense, point, V)
    flat, spec = pack(point)
    J = fastjac.jacobian(dense, point)
    exact_dir = sum(np.tensordot(Jp, v, v.ndim) for Jp, v in zip(J, V))
    # Both central differences of the same smooth map: error-model ~1e-10.
    np.testing.assert_allclose(jv, exact_dir, rtol=0, atol=1e-8)
    u = rng.normal(size=(F_OUT, B))
    g = fastjac.vjp(dense, point, u)
    assert isinstance(g, tuple) and [a.shape for a in g] == [a.shape for a in point]
    for gp, Jp in zip(g, J):
        np.testing.assert_allclose(gp, np.tensordot(u, Jp, 2), rtol=0, atol=1e-8)
    p = project(dense, point, u, V)
    assert p == pytest.approx(float(np.sum(u * jv)), abs=1e-12)


def test_sampled_jacobian_indexes_the_packed_vector(point):
    W, X, b = point
    J = fastjac.jacobian(dense, point)
    full = np.concatenate([Jp.reshape(F_OUT, B, -1) for Jp in J], axis=-1)
    cols, idx = fastjac.sampled_jacobian(dense, point, size=6, seed=1)
    assert cols.shape == (F_OUT, B, 6)
    np.testing.assert_allclose(cols, full[..., idx], rtol=0, atol=1e-9)  # sum order only


def test_executor_with_containers(point):
    J0 = fastjac.jacobian(dense, point)
    with ThreadPoolExecutor(2) as ex:
        J1 = fastjac.jacobian(dense, point, executor=ex, max_memory=1024)
    with ProcessPoolExecutor(2) as ex:
        J2 = fastjac.jacobian(dense, point, executor=ex, max_memory=1024)
    for a, c, d in zip(J0, J1, J2):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(a, d)


def test_flat_wrapper_pickles_when_f_does(point):
    _, spec = pack(point)
    g = pickle.loads(pickle.dumps(spec.wrap(dense)))
    flat, _ = pack(point)
    np.testing.assert_array_equal(g(flat), dense(*point))


def test_container_mismatch_is_a_clear_error(point):
    with pytest.raises(ValueError, match="`v` must be a tuple"):
        fastjac.jvp(dense, point, {"W": 1})
    with pytest.raises(ValueError, match="`sparsity` must be a tuple"):
        fastjac.jacobian(dense, point, sparsity=(np.ones((15, 12), bool),))
