"""The batched engine against the element-by-element oracle, and its safety rules."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastjac
from fastjac._demo import cross_entropy_loss, cross_entropy_loss_many, notebook_checks, softmax
from fastjac.engine import jacobian_with_info
from fastjac.reference import numeric_jacobian as oracle
from fastjac.stencils import STENCILS

from error_model import ULPS_PER_OP, fd_error_bound

ORACLE_STEP = 1e-4
ORACLE_STENCIL = STENCILS[("central", 2)]


class SinMap:
    """``f(x) = A @ sin(B @ x.ravel() + c)``, reshaped: derivatives of every
    order are bounded entrywise by ``sum_l |A_il| |B_lj|**k``, so the error
    model gives a tolerance per entry.  Accepts a leading batch axis."""

    def __init__(self, rng, x_shape, out_shape, width=5, dtype=np.float64):
        n, m = int(np.prod(x_shape, dtype=int)), int(np.prod(out_shape, dtype=int))
        self.x_shape, self.out_shape = tuple(x_shape), tuple(out_shape)
        self.A = rng.uniform(-1, 1, (m, width))
        self.B = rng.uniform(-1.5, 1.5, (width, n))
        self.c = rng.uniform(-1, 1, width)
        self.dtype = np.dtype(dtype)
        self.calls = 0

    def __call__(self, x):
        self.calls += 1
        x = np.asarray(x)
        lead = x.shape[: x.ndim - len(self.x_shape)]
        A, B, c = (a.astype(self.dtype) if x.dtype.kind == "f" else a for a in (self.A, self.B, self.c))
        z = np.sin(x.reshape(lead + (-1,)) @ B.T + c) @ A.T
        return z.reshape(lead + self.out_shape)

    def exact(self, x):
        x = np.asarray(x, dtype=np.float64).ravel()
        J = self.A @ (np.cos(self.B @ x + self.c)[:, None] * self.B)
        return J.reshape(self.out_shape + self.x_shape)

    def deriv_bound(self, k):
        """``D_k[i, j] = sum_l |A_il| |B_lj|**k`` bounds ``|d^k f_i / dx_j^k|``."""
        return np.abs(self.A) @ np.abs(self.B) ** k

    def bound(self, stencil, h, x, eps):
        """Entrywise error bound of an estimate, shaped like J."""
        p = stencil.order
        width = self.A.shape[1]
        f_err = ULPS_PER_OP * eps * (width + 2) * np.abs(self.A).sum(axis=1)[:, None]
        b = fd_error_bound(stencil, np.ravel(h)[None, :], dmax=self.deriv_bound(p + 1),
                           f_err=f_err, d1=self.deriv_bound(1),
                           x_abs=np.abs(np.ravel(x))[None, :], eps=eps)
        return b.reshape(self.out_shape + self.x_shape)


shapes = st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple)
out_shapes = st.sampled_from([(), (1,), (3,), (2, 3)])
stencil_keys = st.sampled_from(sorted(STENCILS))


@given(x_shape=shapes, out_shape=out_shapes, key=stencil_keys,
       dtype=st.sampled_from(["float64", "float32"]),
       vectorized=st.sampled_from([True, "auto", False]), seed=st.integers(0, 2**16))
def test_engine_matches_oracle(x_shape, out_shape, key, dtype, vectorized, seed):
    rng = np.random.default_rng(seed)
    f = SinMap(rng, x_shape, out_shape, dtype=dtype)
    x = rng.uniform(-2, 2, x_shape).astype(dtype)
    x_before = x.copy()
    stencil = STENCILS[key]

    J, info = jacobian_with_info(f, x, method=key[0], order=key[1], vectorized=vectorized)

    assert J.shape == out_shape + x_shape
    assert J.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(x, x_before)
    # The oracle runs in float64, so its own error is the float64 bound at 1e-4.
    x64 = x.astype(np.float64)
    f64 = SinMap(np.random.default_rng(seed), x_shape, out_shape)
    J_ref = oracle(x64, f64, ORACLE_STEP)
    tol = (f.bound(stencil, info.step, x64, info.eps)
           + f64.bound(ORACLE_STENCIL, np.full(x.size, ORACLE_STEP), x64, np.finfo(float).eps))
    err = np.abs(J.astype(np.float64) - J_ref)
    assert np.all(err <= tol), f"max err/bound = {np.max(err / tol)}"


@given(x_shape=shapes, out_shape=out_shapes, seed=st.integers(0, 2**16))
def test_paths_agree_with_each_other(x_shape, out_shape, seed):
    """Vectorized and loop paths evaluate the same points: results agree to
    the round-off of the final combination (a few ulps of |J| + |f|/h)."""
    rng = np.random.default_rng(seed)
    f = SinMap(rng, x_shape, out_shape)
    x = rng.uniform(-2, 2, x_shape)
    Jv, info = jacobian_with_info(f, x, vectorized=True)
    Jl = fastjac.jacobian(f, x, vectorized=False)
    fscale = np.abs(f.A).sum(axis=1).reshape(out_shape + (1,) * len(x_shape))
    # Batched matmul may sum in another order: (width+2) ulps of |f| per evaluation.
    tol = 2 * (f.A.shape[1] + 2) * np.finfo(float).eps * fscale / info.step
    assert np.all(np.abs(Jv - Jl) <= tol)


# --- the notebook's examples: the published accuracy -------------------

CASES = [(c.name, c.f, c.x, c.expected) for c in notebook_checks(seed=0)]
# The published accuracy, float64, max abs error.
ACCURACY = {("central", None): 1e-9, ("central", 4): 1e-12, ("complex", None): 1e-14}


# Cross-entropy w.r.t. a sits 0.1 from log's singularity: central differences are
# held to their own error-model bound there (next test); the complex step is not.
ACCURACY_CASES = [
    pytest.param(name, f, x, expected, method, order, id=f"{name}-{method}-{order}")
    for (name, f, x, expected) in CASES for (method, order) in ACCURACY
    if not (name.startswith("cross-entropy") and method == "central")]


@pytest.mark.parametrize("name,f,x,expected,method,order", ACCURACY_CASES)
def test_notebook_accuracy(name, f, x, expected, method, order):
    J = fastjac.jacobian(f, x, method=method, order=order)
    assert np.max(np.abs(J - expected)) <= ACCURACY[(method, order)]


def test_cross_entropy_near_singularity_within_its_bound():
    """CE wrt a at a=0.1 sits 0.1 from log's singularity: |f'''| = 2 y / a**3 = 400.
    The default step h = EPS**(1/3) leaves h**2/6 * 400 ~ 2.4e-9 of truncation,
    above the 1e-9 headline (scipy's approx_derivative leaves the same).  Hold it
    to its bound; order=4 and the complex step reach the headline figures."""
    y, a = np.array([0.2, 0.0, 0.8]), np.array([0.1, 0.3, 0.6])
    f = lambda a: cross_entropy_loss(y, a)  # noqa: E731
    J, info = jacobian_with_info(f, a)
    bound = info.step ** 2 / 6 * 2 * y / a ** 3 + 4 * np.finfo(float).eps * 2 / info.step
    assert np.all(np.abs(J + y / a) <= bound)
    assert np.max(np.abs(fastjac.jacobian(f, a, method="complex") + y / a)) <= 1e-14


def test_notebook_softmax_is_batched_in_the_trailing_layout():
    """The notebook's softmax broadcasts over a leading batch but normalises over
    axis 0: the probe must notice that layout mixes the points, and find that the
    column-major (trailing) layout, where the points are extra columns, is right."""
    z = np.array([1.0, 2.0, 3.0])
    a = softmax(z)
    J, info = jacobian_with_info(softmax, z, vectorized="auto")
    assert info.strategy == "vectorized-trailing"
    np.testing.assert_allclose(J, np.diag(a) - np.outer(a, a), atol=1e-9)
    wrong = fastjac.jacobian(softmax, z, vectorized=True)  # forced leading: mixes points
    assert not np.allclose(wrong, J, atol=1e-3)
    forced = fastjac.jacobian(softmax, z, vectorized="trailing")
    np.testing.assert_array_equal(forced, J)


def test_fallback_says_why_and_how():
    """A function that batches in neither layout runs point by point, and the
    info says why (the probe's findings) and how to make f accept a batch."""
    def loss(W, x=np.ones(4), y=np.array([0.2, 0.0, 0.8])):
        z = W @ x
        e = np.exp(z - z.max())
        return -np.sum(y * np.log(e / e.sum()))

    W = np.linspace(-1, 1, 12).reshape(3, 4)
    _, info = jacobian_with_info(loss, W)
    assert info.strategy == "loop"
    assert "once per point" in info.fallback and "(24, 3, 4)" in info.fallback
    assert "(3, 4, 24)" in info.fallback and "To batch it" in info.fallback
    _, forced = jacobian_with_info(loss, W, vectorized=False)
    assert forced.fallback is None  # asked for: nothing to explain


def test_auto_decision_is_cached():
    f = SinMap(np.random.default_rng(1), (5,), (2,))
    x = np.linspace(0, 1, 5)
    fastjac.jacobian(f, x)
    first = f.calls
    J = fastjac.jacobian(f, x)
    # Second call: the plan's fast path, one batched call (central differences
    # do not use f(x)), no probing single calls.
    assert f.calls - first == 1
    _, info = jacobian_with_info(f, x)  # the general path: f(x) plus one batch
    assert f.calls - first == 3 and info.nfev == 1 + 2 * 5 and info.ncalls == 2
    np.testing.assert_array_equal(J, jacobian_with_info(f, x)[0])


def test_numeric_jacobian_drop_in_matches_notebook_loop():
    for name, f, x, _ in CASES:
        np.testing.assert_allclose(fastjac.numeric_jacobian(x, f), oracle(x, f),
                                   rtol=0, atol=1e-9, err_msg=name)


def test_gradient_and_jvp():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 4))
    g = fastjac.gradient(lambda x: np.sum(np.sin(x), axis=(-2, -1)), x)
    assert g.shape == x.shape
    np.testing.assert_allclose(g, np.cos(x), atol=1e-9)
    f = SinMap(rng, (3, 4), (2,))
    v = rng.normal(size=(3, 4))
    np.testing.assert_allclose(fastjac.jvp(f, x, v), f.exact(x).reshape(2, -1) @ v.ravel(), atol=1e-8)
    V = rng.normal(size=(5, 3, 4))
    jv = fastjac.jvp(f, x, V)
    assert jv.shape == (5, 2)
    np.testing.assert_allclose(jv, V.reshape(5, -1) @ f.exact(x).reshape(2, -1).T, atol=1e-8)
    with pytest.raises(ValueError, match="must return a scalar"):
        fastjac.gradient(f, x)


def test_scalar_and_nested_list_inputs():
    assert fastjac.jacobian(lambda t: t ** 3, 2.0).shape == ()
    assert abs(fastjac.jacobian(lambda t: t ** 3, 2.0) - 12.0) < 1e-8
    J = fastjac.jacobian(lambda v: np.asarray(v) * 2, [[1.0, 2.0], [3.0, 4.0]])
    assert J.shape == (2, 2, 2, 2)
    np.testing.assert_allclose(J.reshape(4, 4), 2 * np.eye(4), atol=1e-9)


# --- safety ---------------------------------------------------------------------

def test_callers_x_untouched_when_f_raises_midway():
    x = np.linspace(0.0, 1.0, 6)
    before = x.copy()
    calls = []

    def f(v):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("boom")
        return np.sin(v)

    with pytest.raises(RuntimeError, match="boom") as info:
        fastjac.jacobian(f, x, vectorized=False)
    np.testing.assert_array_equal(x, before)
    assert x.flags.writeable
    notes = "\n".join(getattr(info.value, "__notes__", [])) + str(info.value)
    assert "fastjac: raised by f" in notes and "element (1,)" in notes


def test_exception_in_batched_call_names_the_batch():
    def f(v):
        if np.ndim(v) == 2:
            raise ZeroDivisionError("batched boom")
        return np.sin(v)

    with pytest.raises(ZeroDivisionError) as info:
        fastjac.jacobian(f, np.ones(3), vectorized=True)
    assert "batched call" in "\n".join(info.value.__notes__)


def test_f_that_mutates_its_input_gets_a_clear_error():
    x = np.array([1.0, 2.0, 3.0])
    before = x.copy()

    def f(v):
        v *= 2  # a bug: writes into the caller's array
        return v

    for vectorized in (True, False, "auto"):
        with pytest.raises(ValueError, match="modify its input in place"):
            fastjac.jacobian(f, x, vectorized=vectorized)
        np.testing.assert_array_equal(x, before)


def test_f_returning_a_view_of_its_input_is_right():
    """The loop path stores each output before moving the buffer on."""
    x = np.array([1.0, -2.0, 3.0])
    for vectorized in (True, False):
        J = fastjac.jacobian(lambda v: v, x, vectorized=vectorized)
        np.testing.assert_allclose(J, np.eye(3), atol=1e-10)


def test_f_reusing_its_output_buffer_is_right():
    out = np.empty(3)

    def f(v):
        np.multiply(v, v, out=out)
        return out

    x = np.array([1.0, 2.0, 3.0])
    J = fastjac.jacobian(f, x, vectorized=False)
    np.testing.assert_allclose(J, np.diag(2 * x), atol=1e-8)


@pytest.mark.parametrize("x", [np.array([1, 2, 3]), np.array([True, False])])
def test_integer_and_bool_x_computed_in_float64(x):
    J = fastjac.jacobian(lambda v: v * 0.5, x)
    assert J.dtype == np.float64
    np.testing.assert_allclose(J, 0.5 * np.eye(x.size), atol=1e-10)


def test_float32_stays_float32_with_float32_step():
    x = np.array([0.5, 2.0], dtype=np.float32)
    J, info = jacobian_with_info(np.sin, x)
    assert J.dtype == np.float32 and info.step.dtype == np.float32
    eps32 = np.finfo(np.float32).eps
    np.testing.assert_allclose(info.step, eps32 ** (1 / 3) * np.maximum(1, np.abs(x)), rtol=1e-3)
    # Error model: h**2/6 + 2 ulps*|f|/h, with h = eps32**(1/3).
    h = eps32 ** (1 / 3) * 2
    assert np.max(np.abs(J - np.diag(np.cos(x)))) <= h ** 2 / 6 + 4 * eps32 / (h / 2)


@pytest.mark.parametrize("bad", [lambda v: "text", lambda v: None, lambda v: {"a": 1}])
def test_non_numeric_output_is_a_type_error(bad):
    with pytest.raises(TypeError, match="`f` must return"):
        fastjac.jacobian(bad, np.ones(2))


def test_output_shape_change_is_a_value_error():
    state = {"n": 0}

    def f(v):
        state["n"] += 1
        return np.ones(2 if state["n"] == 1 else 3) * v.sum()

    with pytest.raises(ValueError, match="same shape"):
        fastjac.jacobian(f, np.ones(3), vectorized=False)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_x_is_a_value_error(bad):
    with pytest.raises(ValueError, match=r"`x` must be finite; got NaN or inf at index \(1,\)"):
        fastjac.jacobian(np.sin, np.array([1.0, bad]))


def test_non_numeric_x_is_a_type_error():
    with pytest.raises(TypeError, match="`x` must be array_like of real numbers"):
        fastjac.jacobian(np.sin, np.array(["a", "b"]))
    with pytest.raises(TypeError, match="`x` must be array_like of real numbers; got ndarray of dtype complex128"):
        fastjac.jacobian(np.sin, np.array([1 + 1j]))


@pytest.mark.parametrize("x_shape,out", [((0,), (3,)), ((2, 0), ()), ((3,), (0,))])
def test_zero_size_gives_empty_result(x_shape, out):
    J = fastjac.jacobian(lambda v: np.zeros(out) + np.sum(v), np.ones(x_shape))
    assert J.shape == out + x_shape


def test_unknown_method_and_order_list_choices():
    with pytest.raises(ValueError, match=r"`method` must be one of \['backward', 'central', 'complex', 'forward'\]; got 'centre'"):
        fastjac.jacobian(np.sin, np.ones(2), method="centre")
    with pytest.raises(ValueError, match=r"`order` for method 'central' must be one of \[2, 4, 6\]; got 3"):
        fastjac.jacobian(np.sin, np.ones(2), order=3)
    with pytest.raises(ValueError, match="`vectorized` must be one of"):
        fastjac.jacobian(np.sin, np.ones(2), vectorized="yes")


def test_bad_step_is_rejected():
    for step in (0.0, -1e-3, np.nan):
        with pytest.raises(ValueError, match="`step` must be finite and > 0"):
            fastjac.jacobian(np.sin, np.ones(2), step=step)
    with pytest.raises(ValueError, match="one value per element"):
        fastjac.jacobian(np.sin, np.ones(3), step=[1e-3, 1e-3])


def test_result_too_large_raises_before_allocating():
    x = np.zeros(2_000_000)
    with pytest.raises(MemoryError, match="fastjac.jvp") as info:
        fastjac.jacobian(lambda v: v, x)  # J would need 32 TB
    assert "sampled_jacobian" in str(info.value)


def test_max_memory_caps_the_chunk():
    f = SinMap(np.random.default_rng(5), (200,), (3,))
    x = np.linspace(-1, 1, 200)
    J_small, info = jacobian_with_info(f, x, max_memory=2 * (200 + 3) * 8 * 4)
    assert info.block_size == 4 and info.nblocks == 50
    J_big, info_big = jacobian_with_info(f, x)
    assert info_big.nblocks < info.nblocks
    # Same points; BLAS may sum another way per batch size: (width+2) ulps of |f| / h.
    tol = 2 * (f.A.shape[1] + 2) * np.finfo(float).eps * np.abs(f.A).sum(axis=1)[:, None] / info.step
    assert np.all(np.abs(J_small - J_big) <= tol)
    with pytest.raises(MemoryError, match="`max_memory`"):
        fastjac.jacobian(f, x, max_memory=100)


def test_user_step_scalar_and_per_element():
    x = np.array([1.0, 2.0])
    _, info = jacobian_with_info(np.sin, x, step=1e-3)
    np.testing.assert_allclose(info.step, 1e-3, rtol=1e-12)
    _, info = jacobian_with_info(np.sin, x, step=[1e-3, 2e-3])
    np.testing.assert_allclose(info.step, [1e-3, 2e-3], rtol=1e-12)


def test_tuple_and_dict_inputs_in_one_stream():
    rng = np.random.default_rng(6)
    W, X, b = rng.random((3, 4)), rng.random((4, 2)), rng.random((3, 1))

    def loss(W, X, b):
        return cross_entropy_loss_many(np.full((3, 2), 1 / 3), softmax(W @ X + b))

    Jt = fastjac.jacobian(loss, (W, X, b))
    Jd = fastjac.jacobian(loss, {"W": W, "X": X, "b": b})
    for J, key, single in zip(Jt, "WXb", [
            fastjac.jacobian(lambda W: loss(W, X, b), W),
            fastjac.jacobian(lambda X: loss(W, X, b), X),
            fastjac.jacobian(lambda b: loss(W, X, b), b)]):
        np.testing.assert_allclose(J, single, atol=1e-12)
        np.testing.assert_allclose(Jd[key], single, atol=1e-12)


def test_complex_step_needs_complex_safe_f_and_says_so():
    # abs is not analytic; its complex extension gives |x + ih| whose imaginary part is 0.
    J = fastjac.jacobian(lambda v: v ** 2, np.array([3.0]), method="complex")
    np.testing.assert_allclose(J, [[6.0]], rtol=1e-15)


def test_nested_call_inside_f_does_not_clobber_the_outer_stack():
    """An f that itself calls fastjac (on the same thread) gets its own buffers."""
    inner_x = np.linspace(0.1, 1.0, 50)

    def f(v):
        inner = fastjac.jacobian(np.sin, inner_x, vectorized=True)  # uses a pooled stack too
        return np.sin(v) * (1 + 0 * inner.sum())

    x = np.linspace(-1, 1, 400)
    J = fastjac.jacobian(f, x, vectorized=True, max_memory=2 * (400 + 400) * 8 * 16)
    np.testing.assert_allclose(J, np.diag(np.cos(x)), atol=1e-9)


def test_f_must_be_callable():
    for call in (lambda: fastjac.jacobian(3, np.ones(2)), lambda: fastjac.jvp("f", np.ones(2), np.ones(2))):
        with pytest.raises(TypeError, match="`f` must be callable; got 3|`f` must be callable; got 'f'"):
            call()


def test_executor_must_have_submit():
    with pytest.raises(TypeError, match="`executor` must be a concurrent.futures.Executor"):
        fastjac.jacobian(np.sin, np.ones(3), executor="threads")


@pytest.mark.parametrize("vectorized", [True, False, "auto"])
def test_boolean_output_is_differentiated_as_zero_one(vectorized):
    """A step function returning booleans: 0/1 values, zero slope away from the step."""
    J = fastjac.jacobian(lambda v: v > 0, np.array([-1.0, 2.0]), vectorized=vectorized)
    assert J.dtype == np.float64
    np.testing.assert_array_equal(J, np.zeros((2, 2)))


def test_plans_of_ufuncs_and_builtins_are_kept():
    """np.tanh cannot be weakly referenced: its plan must still be reused (no
    probe on every call, which made a warm call several times the loop)."""
    x = np.linspace(-1, 1, 10)
    _, first = jacobian_with_info(np.tanh, x)
    _, again = jacobian_with_info(np.tanh, x)
    assert again.nfev == 1 + 2 * x.size < first.nfev or first.nfev == again.nfev == 1 + 2 * x.size
    assert again.strategy == "vectorized"
