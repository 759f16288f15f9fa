"""Structured Jacobians (sparsity=, output=) against the dense engine."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastjac
from fastjac.engine import jacobian_with_info
from fastjac.stencils import STENCILS
from fastjac._engine.strategies import POINTWISE_ROW_BYTES
from fastjac.structure import color_columns

from counting import Counting
from error_model import ULPS_PER_OP, fd_error_bound, roundoff_bound

EPS = np.finfo(np.float64).eps


class MaskedSin:
    """``f(x) = (A * P) @ sin(x)``: the true pattern of J is exactly ``P``.
    Accepts a leading batch axis."""

    def __init__(self, P, rng):
        self.M = rng.uniform(0.5, 1.5, P.shape) * rng.choice([-1, 1], P.shape) * P

    def __call__(self, x):
        return np.sin(x) @ self.M.T

    def exact(self, x):
        return self.M * np.cos(x)[None, :]

    def roundoff(self, stencil, h, x):
        # Each output sums n products of |M_il| * |sin| <= |M_il|: a few ulps
        # per term; the perturbed point is rounded too (d1 = |M|).
        n = self.M.shape[1]
        f_err = ULPS_PER_OP * EPS * (n + 2) * np.abs(self.M).sum(axis=1)[:, None]
        return roundoff_bound(stencil, h[None, :], f_err, d1=np.abs(self.M),
                              x_abs=np.abs(x)[None, :], eps=EPS)


def _is_valid_coloring(P, colors):
    for g in np.unique(colors):
        if np.any(P[:, colors == g].sum(axis=1) > 1):
            return False
    return True


@given(m=st.integers(1, 12), n=st.integers(1, 12), density=st.floats(0.0, 1.0),
       key=st.sampled_from([("central", 2), ("central", 4), ("forward", 1), ("complex", 2)]),
       output=st.sampled_from(["dense", "sparse"]), seed=st.integers(0, 2**16))
def test_random_pattern_matches_dense_engine(m, n, density, key, output, seed):
    rng = np.random.default_rng(seed)
    P = rng.random((m, n)) < density
    f = MaskedSin(P, rng)
    x = rng.uniform(-2, 2, n)
    stencil = STENCILS[key]

    counted = Counting(f, 1)
    J, first = jacobian_with_info(counted, x, method=key[0], order=key[1], sparsity=P,
                                  output=output)
    assert first.nfev == counted.points  # the probe's points included
    counted.reset()
    J, info = jacobian_with_info(counted, x, method=key[0], order=key[1], sparsity=P,
                                 output=output)  # the plan is reused: no probe
    assert info.nfev == counted.points
    Jd, dinfo = jacobian_with_info(f, x, method=key[0], order=key[1])

    if output == "sparse":
        assert J.shape == (m, n) and J.format == "csr"
        J = J.toarray()
    colors, k = color_columns(*np.nonzero(P), P.shape)
    assert _is_valid_coloring(P, colors)
    assert info.ncolors == k <= n
    S = stencil.evaluations_per_column
    assert info.nfev == 1 + S * k  # f(x) plus S points per color
    assert np.all(J[~P] == 0)
    # Same steps; row i sees only column j of its group move, so both
    # estimates share the truncation error and differ by round-off only.
    tol = 2 * f.roundoff(stencil, info.step, x)
    assert np.all(np.abs(J - Jd) <= tol)
    # And both are within the error model of the exact Jacobian (|f^(k)| <= |M|).
    bound = fd_error_bound(stencil, info.step[None, :], dmax=np.abs(f.M),
                           f_err=ULPS_PER_OP * EPS * (n + 2) * np.abs(f.M).sum(1)[:, None],
                           d1=np.abs(f.M), x_abs=np.abs(x)[None, :], eps=EPS)
    assert np.all(np.abs(J - f.exact(x)) <= bound)


def test_tridiagonal_takes_three_colors():
    n = 200
    x = np.linspace(-1, 1, n)

    def f(v):  # y_i = v_i**2 + v_{i-1} v_{i+1}
        pad = np.pad(v, [(0, 0)] * (v.ndim - 1) + [(1, 1)])
        return v ** 2 + pad[..., :-2] * pad[..., 2:]

    P = np.eye(n, dtype=bool) | np.eye(n, k=1, dtype=bool) | np.eye(n, k=-1, dtype=bool)
    jacobian_with_info(f, x, sparsity=P)  # probes how f batches
    J, info = jacobian_with_info(f, x, sparsity=P)
    assert info.ncolors == 3 and info.nfev == 1 + 2 * 3
    Jd = fastjac.jacobian(f, x)
    # Polynomial of degree 2: central differences are exact up to round-off,
    # ~ 4 ulps * |f| / h with h ~ EPS**(1/3): 1e-10 covers it.
    np.testing.assert_allclose(J, Jd, rtol=0, atol=1e-10)


def test_diagonal_is_two_points_whatever_n():
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    for n in (10, 1000, 100_000):
        x = np.linspace(-3, 3, n)
        jacobian_with_info(sig, x, sparsity="diagonal", output="diagonal")  # probes
        d, info = jacobian_with_info(sig, x, sparsity="diagonal", output="diagonal")
        assert info.nfev == 1 + 2  # f(x) plus exactly 2 perturbed points
        # f(x), then one batched call of the 2 points (two calls where a point is
        # large enough that stacking it costs more than visiting it in place).
        assert info.ncalls == (2 if n * 8 < POINTWISE_ROW_BYTES else 3)
        exact = sig(x) * (1 - sig(x))
        # central, h ~ EPS**(1/3) * max(1,|x|): truncation h**2 |f'''| / 6 with
        # |sigmoid'''| <= 1/8, round-off ~ EPS / h; 1e-9 bounds both for |x| <= 3.
        np.testing.assert_allclose(d, exact, rtol=0, atol=1e-9)
        assert d.shape == x.shape
    x = np.linspace(-3, 3, 30).reshape(5, 6)
    J = fastjac.jacobian(sig, x, sparsity="diagonal")
    np.testing.assert_array_equal(J, fastjac.jacobian(sig, x, sparsity=np.eye(30, dtype=bool)))
    # Same points; only the SIMD path of exp may differ by an ulp: ~EPS / h = 4e-11.
    np.testing.assert_allclose(J, fastjac.jacobian(sig, x), rtol=0, atol=1e-10)


def test_diagonal_large_costs_two_points_not_two_n():
    """At n = 1e5 the diagonal path evaluates f at x and 2 perturbed points (each
    visited in place: a point this large costs more to stack), instead of the element loop's 2e5 calls (speed is measured in
    benchmarks/bench_scale.py, not here)."""
    calls = []

    def sig(z):
        calls.append(np.shape(z))
        return 1 / (1 + np.exp(-z))

    x = np.linspace(-3, 3, 100_000)
    d, info = jacobian_with_info(sig, x, sparsity="diagonal", output="diagonal", vectorized=True)
    assert info.nfev == 3 and len(calls) == 3 and calls[1:] == [x.shape, x.shape]
    s = 1 / (1 + np.exp(-x))
    # Central differences, h = EPS**(1/3): h**2/6 * max|sigmoid'''| (1/8) + EPS/h: < 1e-10.
    np.testing.assert_allclose(d, s * (1 - s), rtol=0, atol=1e-9)


@pytest.mark.parametrize("x_axis,out_axis", [(1, 1), (0, 0), (1, 0)])
def test_batch_independent_matches_dense(rng, x_axis, out_axis):
    feats, out_feats, B = 4, 3, 7
    W = rng.normal(size=(out_feats, feats))
    x = rng.normal(size=(feats, B) if x_axis == 1 else (B, feats))

    def layer(X):
        Xc = X if x_axis == 1 else np.swapaxes(X, -1, -2)   # (..., feats, B)
        Z = np.tanh(W @ Xc) * Xc.sum(axis=-2, keepdims=True)  # mixes features only
        return Z if out_axis == 1 else np.swapaxes(Z, -1, -2)

    spec = fastjac.batch_independent(x_axis=x_axis, out_axis=out_axis)
    jacobian_with_info(layer, x, sparsity=spec)  # probes how layer batches
    J, info = jacobian_with_info(layer, x, sparsity=spec)
    assert info.ncolors == feats and info.nfev == 1 + 2 * feats  # not 2 * feats * B
    Jd = fastjac.jacobian(layer, x)
    # Same steps, and each output sees one moved sample only: round-off level.
    np.testing.assert_allclose(J, Jd, rtol=0, atol=1e-8)
    S = fastjac.jacobian(layer, x, sparsity=spec, output="sparse")
    np.testing.assert_array_equal(S.toarray(), J.reshape(S.shape))
    assert S.nnz == out_feats * feats * B


def test_scipy_sparse_pattern_and_full_shape_pattern(rng):
    import scipy.sparse as sp

    P = rng.random((6, 8)) < 0.3
    f = MaskedSin(P, rng)
    x = rng.normal(size=8)
    J1 = fastjac.jacobian(f, x, sparsity=sp.csr_array(P))
    J2 = fastjac.jacobian(f, x, sparsity=P)
    J3 = fastjac.jacobian(lambda v: f(v.reshape(v.shape[:-2] + (8,))).reshape(v.shape[:-2] + (2, 3)),
                          x.reshape(2, 4), sparsity=P.reshape(2, 3, 2, 4))
    np.testing.assert_array_equal(J1, J2)
    np.testing.assert_array_equal(J3.reshape(6, 8), J2)


def test_sparse_output_without_pattern_is_dense_converted(rng):
    f = MaskedSin(np.ones((3, 4), bool), rng)
    x = rng.normal(size=4)
    S = fastjac.jacobian(f, x, output="sparse")
    np.testing.assert_array_equal(S.toarray(), fastjac.jacobian(f, x))


def test_container_inputs_with_pattern(rng):
    a, b = rng.normal(size=3), rng.normal(size=2)
    f = lambda a, b: np.concatenate([np.sin(a), b ** 2])  # noqa: E731
    J, info = jacobian_with_info(f, (a, b), sparsity=(np.eye(5, 3, dtype=bool),
                                                      np.eye(5, 2, k=-3, dtype=bool)))
    Jd = fastjac.jacobian(f, (a, b))
    assert info.ncolors == 1
    for part, dense in zip(J, Jd):
        np.testing.assert_allclose(part, dense, rtol=0, atol=1e-15)
    d = fastjac.jacobian(f, {"a": a, "b": b}, sparsity="diagonal", output="diagonal")
    np.testing.assert_allclose(d["a"], np.cos(a), atol=1e-9)  # central-difference error
    np.testing.assert_allclose(d["b"], 2 * b, atol=1e-9)
    S = fastjac.jacobian(f, (a, b), sparsity="diagonal", output="sparse")
    assert [s.shape for s in S] == [(5, 3), (5, 2)]
    with pytest.raises(ValueError, match="single array x"):
        fastjac.jacobian(f, (a, b), sparsity=fastjac.batch_independent(axis=0))


@pytest.mark.parametrize("kwargs,match", [
    (dict(sparsity="tridiagonal"), r"`sparsity` must be one of \['diagonal'\]"),
    (dict(sparsity="diagonal", output="csr"), r"`output` must be one of"),
    (dict(sparsity=np.ones((2, 2), bool)), r"`sparsity` must have the shape of J"),
    (dict(output="diagonal"), r"`output='diagonal'` needs `sparsity`"),
    (dict(sparsity=np.ones((3, 3), bool), output="diagonal"), r"off-diagonal"),
    (dict(sparsity=fastjac.batch_independent(axis=3)), r"names an axis"),
])
def test_errors_name_the_parameter(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fastjac.jacobian(np.sin, np.zeros(3), **kwargs)


def test_diagonal_needs_elementwise_shape():
    with pytest.raises(ValueError, match="elementwise"):
        fastjac.jacobian(lambda v: v[:2], np.zeros(3), sparsity="diagonal")
    with pytest.raises(TypeError, match="`x_axis` must be an int"):
        fastjac.batch_independent()


def test_pattern_missing_an_entry_is_not_silently_fine(rng):
    # A wrong pattern gives wrong numbers: documented, and shown here.
    f = lambda v: np.array([v[0] * v[1], v[1]])  # noqa: E731
    x = np.array([1.0, 2.0])
    J = fastjac.jacobian(f, x, sparsity=np.eye(2, dtype=bool))
    assert J[0, 1] == 0 and abs(J[0, 0] - 2.0) > 0.5  # J[0,0] absorbed J[0,1]
