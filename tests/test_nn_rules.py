"""fastjac.nn kernels checked three ways, driven by nn.RULES.

For every rule, every implementation it has (numpy, all-compiled kernel,
hybrid) and float32/float64:

1. against the plain-numpy reference (``rule.reference*``, notebook style,
   evaluated in float64);
2. against central finite differences of that reference
   (``fastjac.reference.numeric_jacobian``);
3. ``vjp(g) == g J`` (the inner-product identity with the rule's own
   Jacobian).

Tolerances come from the error model (``tests/error_model.py``):

* kernel vs reference: every output entry is a few elementary operations
  (at most ``OPS``) plus, for softmax-like ops and losses, a sum of ``terms``
  entries, each rounding costing at most ``ULPS_PER_OP`` ulps of the result's
  scale; ``exp(z - max z)`` also turns the absolute rounding of ``z - max z``
  (``eps |z|``) into a relative error, hence the ``+ max|z|``;
* finite differences: ``fd_error_bound`` with the central stencil, the
  notebook's step ``H``, ``dmax`` a bound on the third derivative over the
  sampled domain (:data:`D3`) and ``f_err`` the reference's own rounding.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from error_model import ULPS_PER_OP, fd_error_bound
from fastjac import nn
from fastjac.reference import numeric_jacobian
from fastjac.stencils import STENCILS

CENTRAL = STENCILS[("central", 2)]
H = 1e-4  # numeric_jacobian's notebook step
OPS = 8  # elementary operations per output entry, at most, in any kernel
DTYPES = [np.float64, np.float32]
EPS64 = np.finfo(np.float64).eps

# Bounds on |f'''| over the sampled domains (see each rule's ``sample``):
# sigmoid 1/8 (at 0); tanh 2; relu/leaky 0 off the kink (samples keep
# |z| >= 0.1 > H); softmax-like ops: each derivative of a polynomial in a
# multiplies it by factors (delta - a) of size <= 1 and at most triples the
# number of terms, so <= 3! = 6; cross-entropy -2 y / a^3 with a >= 0.2:
# 250; mse and dense are quadratic / linear: 0.
D3 = {"sigmoid": 0.125, "tanh": 2.0, "relu": 0.0, "leaky_relu": 0.0, "softmax": 6.0, "log_softmax": 6.0,
      "cross_entropy": 250.0, "cross_entropy_mean": 250.0, "mse": 0.0, "softmax_cross_entropy": 6.0,
      "dense": 0.0}
ARRAY_OPS = [name for name, r in nn.RULES.items() if r.kind in ("elementwise", "normalizer")]
LOSSES = [name for name, r in nn.RULES.items() if r.kind == "loss"]


def kernel_tol(dtype, scale, terms=0, zmax=0.0):
    """Largest error of a kernel output of magnitude ``scale`` (see the module docstring)."""
    return ULPS_PER_OP * np.finfo(dtype).eps * (OPS + terms + zmax) * max(1.0, scale)


def fd_tol(name, x, f_scale, d1, terms=0):
    """The error-model bound of a central difference of the float64 reference."""
    f_err = ULPS_PER_OP * EPS64 * (OPS + terms) * max(1.0, f_scale)
    return float(fd_error_bound(CENTRAL, H, dmax=D3[name], f_err=f_err, d1=d1,
                                x_abs=float(np.abs(x).max()), eps=EPS64))


def paths(rule):
    """``{label: (backend, shape)}`` that run each implementation the rule has.

    The hybrid runs only under ``auto`` above the crossover, so its shape is
    taken from the table (every route's ``up_to``) and checked with ``pick``.
    """
    routes = list(rule.routes.values())
    out = {"numpy": ("numpy", (7, 5))}
    if any(r.kernel is not None for r in routes):
        out["kernel"] = ("numba", (7, 5))
    hybrids = [r for r in routes if r.hybrid is not None and r.crossover.large == "hybrid"]
    if hybrids:
        up_to = max(v for r in hybrids for v in r.crossover.up_to.values())
        out["hybrid"] = ("auto", (up_to // 8 + 1, 9))
    return out


CASES = [(name, label) for name in nn.RULES if name != "dense" for label in paths(nn.RULES[name])]


def test_every_rule_has_an_error_model_entry():
    assert set(D3) == set(nn.RULES)


def _which(route, impl):
    """The name of the implementation ``route.pick`` returned."""
    inner = getattr(impl, "func", impl)  # partials bind a kernel's constants or a hybrid's finisher
    if inner is route.numpy:
        return "numpy"
    if route.hybrid is not None and inner is route.hybrid:
        return "hybrid"
    return "kernel" if route.kernel is not None and inner is route.kernel.dispatcher else "?"


@pytest.mark.parametrize("name,label", CASES)
def test_paths_are_what_dispatch_picks(name, label):
    """The shapes of :func:`paths` reach the implementation they are named after."""
    rule = nn.RULES[name]
    backend, (n, B) = paths(rule)[label]
    reached = set()
    for route in rule.routes.values():
        if rule.kind == "elementwise":
            n, B = n * B, 1
        reached.add(_which(route, route.pick(backend, n, B, np.dtype(np.float64))))
    assert label in reached and "?" not in reached


# ---------------------------------------------------------------- elementwise and normalizers
def _stack_from_full(Jfull, n, B):
    """(n, B, n, B) -> per-sample (B, n, n), asserting samples do not interact."""
    stack = np.stack([Jfull[:, b, :, b] for b in range(B)])
    off = Jfull.copy()
    for b in range(B):
        off[:, b, :, b] = 0
    return stack, np.abs(off).max()


def _layout(shape, layout):
    """A batch ``(n, B)``, or one vector of the same size (a single column: kernels' ``B == 1`` loops)."""
    n, B = shape
    return (shape, n, B) if layout == "batch" else ((n * B,), n * B, 1)


@pytest.mark.parametrize("layout", ["batch", "vector"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("name,label", [c for c in CASES if c[0] in ARRAY_OPS])
def test_array_op_three_ways(name, label, dtype, layout):
    rule = nn.RULES[name]
    backend, shape = paths(rule)[label]
    shape, n, B = _layout(shape, layout)
    sample = rule.sample(shape, dtype, seed=1)
    (z,), g = sample.args, sample.cotangent
    z64, g64 = (t.astype(np.float64).reshape(n, B) for t in (z, g))
    zmax = float(np.abs(z64).max())
    terms = n if rule.kind == "normalizer" else 0
    dense = {"dense": True} if rule.kind == "elementwise" else {}

    a = rule.forward(z, backend=backend)
    J = rule.jacobian(z, backend=backend, **dense)
    v = rule.vjp(z, g, backend=backend)
    assert a.dtype == dtype and J.dtype == dtype and v.dtype == dtype
    assert a.shape == shape and v.shape == shape and J.shape == ((B, n, n) if layout == "batch" else (n, n))
    a, J, v = a.reshape(n, B), J.reshape(B, n, n), v.reshape(n, B)

    # 1. the numpy reference, in float64
    a_ref = rule.reference(z64)
    np.testing.assert_allclose(a, a_ref, rtol=0, atol=kernel_tol(dtype, np.abs(a_ref).max(), terms, zmax))
    J_ref = np.stack([rule.reference_jacobian(z64[:, b]) for b in range(B)])
    np.testing.assert_allclose(J, J_ref, rtol=0, atol=kernel_tol(dtype, np.abs(J_ref).max(), terms, zmax))
    if rule.kind == "elementwise":  # the compact diagonal is the same numbers
        d = rule.jacobian(z, backend=backend).reshape(n, B)
        np.testing.assert_array_equal(d, np.stack([np.diag(Jb) for Jb in J]).T)

    # 2. central differences of the reference
    Jfull = numeric_jacobian(z64, rule.reference, H).reshape(n, B, n, B)
    Jfd, off = _stack_from_full(Jfull, n, B)
    d1 = float(np.abs(J_ref).max())
    tol = fd_tol(name, z64, np.abs(a_ref).max(), d1, terms) + kernel_tol(dtype, d1, terms, zmax)
    np.testing.assert_allclose(J, Jfd, rtol=0, atol=tol)
    assert off <= tol  # a sample's outputs do not depend on another sample's inputs

    # 3. vjp(g) == g J, with the rule's own Jacobian
    gJ = np.einsum("ib,bij->jb", g64, J.astype(np.float64))
    scale = float(np.abs(g64).max() * max(1.0, np.abs(J).max()))
    np.testing.assert_allclose(v, gJ, rtol=0, atol=kernel_tol(dtype, scale, n, zmax))


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_vjp_equals_g_times_J_hypothesis(data):
    name = data.draw(st.sampled_from(ARRAY_OPS))
    rule = nn.RULES[name]
    dtype = data.draw(st.sampled_from(DTYPES))
    backend = data.draw(st.sampled_from(list(nn.BACKENDS)))
    shape = data.draw(st.tuples(st.integers(1, 9), st.integers(1, 5)))
    big = 1e3 if rule.kind == "normalizer" else 30.0
    z = data.draw(hnp.arrays(dtype, shape, elements=st.floats(-big, big, allow_nan=False, width=32)))
    g = data.draw(hnp.arrays(dtype, shape, elements=st.floats(-10, 10, width=32)))
    zc, gc = z.copy(), g.copy()
    dense = {"dense": True} if rule.kind == "elementwise" else {}
    v = rule.vjp(z, g, backend=backend)
    J = rule.jacobian(z, backend=backend, **dense)
    expect = np.einsum("ib,bij->jb", g.astype(np.float64), J.astype(np.float64))
    assert v.dtype == dtype and np.isfinite(v).all()
    # |J| <= 1 for these ops: a dot product of n terms of size <= max|g|
    np.testing.assert_allclose(v, expect, rtol=0, atol=kernel_tol(dtype, np.abs(g).max(), shape[0]))
    np.testing.assert_array_equal(z, zc)
    np.testing.assert_array_equal(g, gc)


# ---------------------------------------------------------------- losses
@pytest.mark.parametrize("layout", ["batch", "vector"])
@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
@pytest.mark.parametrize("name,label", [c for c in CASES if c[0] in LOSSES])
def test_loss_three_ways(name, label, dtype, layout):
    rule = nn.RULES[name]
    backend, shape = paths(rule)[label]
    shape, n, B = _layout(shape, layout)
    sample = rule.sample(shape, dtype, seed=2)
    (y, a), g = sample.args, sample.cotangent
    y64, a64 = y.astype(np.float64), a.astype(np.float64)
    terms = n if rule.canonical else 0

    value = rule.forward(y, a, backend=backend)
    val2, grad = rule.value_and_grad(y, a, backend=backend)
    jac = rule.jacobian(y, a, backend=backend)
    v = rule.vjp(y, a, g, backend=backend)
    assert isinstance(value, float) and isinstance(val2, float)
    assert grad.dtype == dtype and jac.dtype == dtype and v.dtype == dtype and grad.shape == shape

    # 1. the numpy reference: every term of these losses has one sign, so the
    #    value's error is relative, a sum of a.size rounded terms
    ref = rule.reference(y64, a64)
    rtol = ULPS_PER_OP * np.finfo(dtype).eps * (OPS + a.size + np.abs(a64).max())
    np.testing.assert_allclose([value, val2], [ref, ref], rtol=rtol)
    np.testing.assert_array_equal(grad, jac)

    # 2. central differences of the reference
    Gfd = numeric_jacobian(a64, lambda x: rule.reference(y64, x), H)
    d1 = float(np.abs(Gfd).max())
    tol = fd_tol(name, a64, abs(ref), d1, a.size) + kernel_tol(dtype, d1, terms, np.abs(a64).max())
    np.testing.assert_allclose(grad, Gfd, rtol=0, atol=tol)

    # 3. a scalar loss: vjp(g) = g dL/da
    np.testing.assert_allclose(v, g * grad.astype(np.float64), rtol=0, atol=kernel_tol(dtype, g * d1))


def test_cross_entropy_mean_clip_and_1d():
    Y = np.array([[1.0, 0.0], [0.0, 1.0]])
    A = np.array([[0.0, 0.5], [1.0, 0.5]])
    for backend in nn.BACKENDS:
        v, g = nn.cross_entropy_mean.value_and_grad(Y, A, backend=backend)
        assert v == pytest.approx((-np.log(1e-10) - np.log(0.5)) / 2)
        assert g[0, 0] == 0.0 and g[1, 1] == pytest.approx(-1.0)
        assert nn.cross_entropy.forward([0.0, 1.0], [0.5, 0.25], backend=backend) == pytest.approx(np.log(4))


@pytest.mark.parametrize("backend", nn.BACKENDS)
def test_losses_propagate_nan_like_numpy(backend):
    """A NaN prediction gives a NaN loss and a NaN in its own gradient entry, on every path."""
    y = np.array([[1.0, 0.0], [0.0, 1.0]])
    a = np.array([[np.nan, 0.5], [0.5, 0.5]])
    for name in ("cross_entropy", "cross_entropy_mean", "mse"):
        value, grad = nn.RULES[name].value_and_grad(y, a, backend=backend)
        assert np.isnan(value) and np.isnan(grad[0, 0]) and np.isfinite(grad[1:, 1:]).all(), name


@pytest.mark.parametrize("backend", nn.BACKENDS)
def test_softmax_large_magnitudes_do_not_overflow(backend):
    z = np.array([[1000.0, -1000.0], [0.0, 999.0], [-1000.0, 1000.0]])
    a = nn.softmax.forward(z, backend=backend)  # filterwarnings=error: an overflow would raise
    assert np.isfinite(a).all()
    np.testing.assert_allclose(a.sum(axis=0), 1.0, rtol=0, atol=kernel_tol(np.float64, 1.0, 3))
    np.testing.assert_allclose(nn.log_softmax.forward(z, backend=backend)[:, 0], [0.0, -1000.0, -2000.0],
                               rtol=0, atol=kernel_tol(np.float64, 2000.0))
    assert np.isfinite(nn.softmax.jacobian(z, backend=backend)).all()
    assert np.isfinite(nn.sigmoid.vjp(np.array([-1000.0, 800.0]), np.ones(2), backend=backend)).all()


@pytest.mark.parametrize("backend", nn.BACKENDS)
def test_sigmoid_keeps_relative_accuracy_in_the_tails(backend):
    """exp(-|z|) formulations: sigma(-40) ~ 4.2e-18 and sigma'(+-40) are not rounded to 0 or garbage."""
    z = np.array([-40.0, 40.0])
    exact = np.exp(-40.0) / (1 + np.exp(-40.0))
    a = nn.sigmoid.forward(z, backend=backend)
    np.testing.assert_allclose(a[0], exact, rtol=kernel_tol(np.float64, 1.0))
    np.testing.assert_allclose(nn.sigmoid.jacobian(z, backend=backend), [exact, exact],
                               rtol=kernel_tol(np.float64, 1.0))


def test_leaky_relu_slope_and_relu_kink_value():
    z = np.array([-2.0, 0.0, 3.0])
    for backend in nn.BACKENDS:
        np.testing.assert_array_equal(nn.leaky_relu.jacobian(z, backend=backend), [0.01, 0.01, 1.0])
        np.testing.assert_array_equal(nn.relu.jacobian(z, backend=backend), [0.0, 0.0, 1.0])
        np.testing.assert_array_equal(nn.leaky_relu.vjp(z, np.ones(3), backend=backend), [0.01, 0.01, 1.0])
    steep = nn.LeakyReLU(2.0)
    for backend in nn.BACKENDS:
        np.testing.assert_array_equal(steep.forward(z, backend=backend), [-4.0, 0.0, 3.0])


# ---------------------------------------------------------------- dense
@pytest.mark.parametrize("dtype", DTYPES, ids=["f64", "f32"])
def test_dense_three_ways(dtype):
    sample = nn.dense.sample((4, 5), dtype, seed=3)
    (W, X, b), dZ = sample.args, sample.cotangent
    d, m = X.shape
    Z = nn.dense.forward(W, X, b)
    assert Z.dtype == dtype
    np.testing.assert_allclose(Z, nn.dense.reference(W, X, b), rtol=0, atol=kernel_tol(dtype, 10.0, d))
    np.testing.assert_allclose(nn.dense_forward(W, X, b.ravel()), Z, rtol=0, atol=kernel_tol(dtype, 10.0))
    dW, dX, db = nn.dense.vjp(W, X, dZ)
    assert db.shape == (W.shape[0], 1) and dW.shape == W.shape and dX.shape == X.shape
    for got, ref in zip((dW, dX, db), nn.dense.reference_vjp(W, X, dZ)):
        np.testing.assert_allclose(got, ref, rtol=0, atol=kernel_tol(dtype, 10.0, m))
    np.testing.assert_array_equal(nn.dense.jacobian(W, X, b), W)
    # linear in each argument: truncation is zero, the bound is round-off only
    W64, X64, b64, dZ64 = (t.astype(np.float64) for t in (W, X, b, dZ))

    def L(W_, X_, b_):
        return float(np.sum(dZ64 * nn.dense.reference(W_, X_, b_)))

    tol = fd_tol("dense", np.concatenate([W64.ravel(), X64.ravel()]), 50.0, 10.0, W.size) \
        + kernel_tol(dtype, 10.0, m)
    np.testing.assert_allclose(dW, numeric_jacobian(W64, lambda w: L(w, X64, b64), H), rtol=0, atol=tol)
    np.testing.assert_allclose(dX, numeric_jacobian(X64, lambda x: L(W64, x, b64), H), rtol=0, atol=tol)
    np.testing.assert_allclose(db, numeric_jacobian(b64, lambda bb: L(W64, X64, bb), H), rtol=0, atol=tol)


def test_dense_rows_layout_matches_the_notebook_layout():
    (W, X, b), dZ = nn.dense.sample((4, 5)).args, nn.dense.sample((4, 5)).cotangent
    Z = nn.dense_forward(W, X, b)
    np.testing.assert_array_equal(nn.dense_forward(W, X.T, b.ravel(), axis=1), Z.T)
    dW, dX, db = nn.dense_backward(W, X, dZ)
    dWr, dXr, dbr = nn.dense_backward(W, X.T, dZ.T, axis=-1)
    np.testing.assert_allclose(dWr, dW, rtol=0, atol=kernel_tol(np.float64, 10.0, 5))
    np.testing.assert_allclose(dXr, dX.T, rtol=0, atol=kernel_tol(np.float64, 10.0, 5))
    np.testing.assert_allclose(dbr, db, rtol=0, atol=kernel_tol(np.float64, 10.0, 5))
