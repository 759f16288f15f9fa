"""Bad input gets a clear error that names the parameter, and loses nothing.

Every case here once surfaced as a raw numpy, Numba or Python error (or was
accepted silently); each now names what is wrong, what was expected and
what was received, and the caller's arrays are left as they were.
"""
from __future__ import annotations

import numba
import numpy as np
import pytest

import fastjac
from fastjac.engine import jacobian_with_info

X = np.linspace(-1, 1, 6)


def test_vectorized_f_returning_integers_is_differentiated():
    # A batch of int outputs is a step function of x: numbers, not a UFuncTypeError.
    J = fastjac.jacobian(lambda x: np.floor(100 * x).astype(np.int64), X, vectorized=True)
    assert J.dtype == np.float64 and np.all(np.isfinite(J))


def test_jitted_f_returning_a_tuple():
    @numba.njit(cache=False)
    def pair(x):
        return x[0], x[1]

    # A tuple of numbers is a vector output (the driver cannot compile for it;
    # the loop serves it), a tuple of arrays is a clear error.
    J = fastjac.jacobian(pair, X, vectorized=False)
    np.testing.assert_allclose(J, np.eye(6)[:2], atol=1e-9)

    @numba.njit(cache=False)
    def ragged(x):
        return x, x[:2]

    with pytest.raises(TypeError, match="`f` must return a number or an array of numbers; got a ragged"):
        fastjac.jacobian(ragged, X, vectorized=False)


def test_eagerly_typed_njit_rejecting_read_only_input_works():
    @numba.njit("float64[:](float64[:])", cache=False)
    def f(x):
        return np.sin(x)

    J, info = jacobian_with_info(f, X)
    np.testing.assert_allclose(J, np.diag(np.cos(X)), atol=1e-9)
    assert any("read-only" in n for n in info.notes)
    assert fastjac.check_jacobian(f, X, np.diag(np.cos(X))).passed


class MemoryviewLike:
    """What a Cython function with typed memoryviews does with a read-only array."""

    def __call__(self, x):
        if not x.flags.writeable:
            raise ValueError("buffer source array is read-only")
        return np.sin(x)


def test_cython_style_f_rejecting_read_only_input_works():
    f = MemoryviewLike()
    J, info = jacobian_with_info(f, X)
    np.testing.assert_allclose(J, np.diag(np.cos(X)), atol=1e-9)
    assert any("writable copies" in n for n in info.notes)
    r = fastjac.check_jacobian(f, X, np.diag(np.cos(X)))  # the guards take copies too
    assert r.passed and any("writable copies" in n for n in r.notes)
    assert fastjac.check_grad(lambda v: np.sum(f(v)), X, np.cos(X)).passed


def _writer(x):
    x[0] = 0.0
    return np.sin(x)


def test_f_writing_into_its_input_is_named_in_every_check():
    before = X.copy()
    for call in (lambda: fastjac.jacobian(_writer, X),
                 lambda: fastjac.check_jacobian(_writer, X, np.eye(6)),
                 lambda: fastjac.check_grad(lambda v: np.sum(_writer(v)), X, np.ones(6)),
                 lambda: fastjac.check_vjp(_writer, X, lambda u: u)):
        with pytest.raises(ValueError, match="`f` tried to modify its input in place"):
            call()
    np.testing.assert_array_equal(X, before)


def test_a_dict_missing_a_key_is_named():
    x = {"a": np.ones(2), "b": np.ones(3)}
    f = lambda a, b: np.sum(a) + np.sum(b ** 2)  # noqa: E731
    with pytest.raises(ValueError, match=r"`grad` must have the same keys as x.*missing \['b'\]"):
        fastjac.check_grad(f, x, {"a": np.ones(2)})
    g = lambda a, b: np.concatenate([a, b])  # noqa: E731
    with pytest.raises(ValueError, match=r"`expected` must have the same keys as x"):
        fastjac.check_jacobian(g, x, {"a": np.zeros((5, 2))})
    with pytest.raises(ValueError, match=r"`v` must be a dict"):
        fastjac.jvp(g, x, [np.ones(2), np.ones(3)])
    with pytest.raises(ValueError, match=r"`v`"):
        fastjac.jvp(g, x, {"a": np.ones(2)})


@pytest.mark.parametrize("kwargs, match", [
    (dict(seed="abc"), r"`seed` must be an integer >= 0.*got 'abc'"),
    (dict(seed=-1), r"`seed` must be an integer >= 0.*got -1"),
    (dict(rtol="1e-3"), r"`rtol` must be a finite number >= 0 or None; got '1e-3'"),
    (dict(order=[2]), r"`order` for method 'central' must be one of"),
    (dict(vectorized=np.array([True])), r"`vectorized` must be one of"),
    (dict(step=True), r"`step` must be a positive number"),
    (dict(progress="yes"), r"`progress` must be one of \['auto', True, False\]; got 'yes'"),
])
def test_bad_options_are_named(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        fastjac.check_grad(lambda v: np.sum(v ** 2), X, 2 * X, mode="sampled", **kwargs)


def test_max_memory_as_a_float_is_a_number_of_bytes():
    J = fastjac.jacobian(np.sin, X, max_memory=1e6)
    np.testing.assert_allclose(J, np.diag(np.cos(X)), atol=1e-9)
    with pytest.raises(ValueError, match="`max_memory` must be a positive number of bytes"):
        fastjac.jacobian(np.sin, X, max_memory=-5.0)


def test_executor_whose_submit_returns_a_value_is_named():
    class Eager:
        def submit(self, fn, *args):
            return fn(*args)

    with pytest.raises(TypeError, match="`executor.submit` must return a future"):
        fastjac.jacobian(np.sin, np.linspace(0, 1, 300), executor=Eager(), max_memory=20_000)


class Misbehaving:
    """Well behaved at x, not at the perturbed points."""

    def __init__(self, what):
        self.what, self.x0 = what, None

    def __call__(self, x):
        if self.x0 is None:
            self.x0 = np.array(x, copy=True)
        if np.array_equal(x, self.x0):
            return np.sin(x)
        if self.what == "none":
            return None
        if self.what == "complex":
            return np.sin(x) + 1j
        return (np.sin(x), np.ones(2))  # ragged


@pytest.mark.parametrize("what, match", [
    ("none", r"got None \(with x element"),
    ("complex", r"must return real values.*\(with x element"),
    ("ragged", r"ragged tuple.*\(with x element"),
])
def test_bad_outputs_at_perturbed_points_name_the_point(what, match):
    with pytest.raises(TypeError, match=match):
        fastjac.jacobian(Misbehaving(what), X, vectorized=False)


@pytest.mark.parametrize("what", ["none", "complex", "ragged"])
def test_bad_outputs_of_a_batch_are_clear(what):
    def f(x):
        if x.ndim == 1:
            return np.sin(x)
        return {"none": None, "complex": np.sin(x) + 1j, "ragged": (np.sin(x), 1)}[what]

    with pytest.raises(TypeError, match="`f` must return"):
        fastjac.jacobian(f, X, vectorized=True)
    np.testing.assert_allclose(fastjac.jacobian(f, X), np.diag(np.cos(X)), atol=1e-9)  # auto: loop


def test_masked_array_with_masked_entries_is_refused():
    x = np.ma.masked_array([1.0, np.nan, 3.0], mask=[False, True, False])
    with pytest.raises(ValueError, match="`x` must be a plain array; got a masked array with 1 masked"):
        fastjac.jacobian(np.sin, x)
    # Nothing masked: a masked array is just its data.
    ok = np.ma.masked_array([1.0, 2.0], mask=[False, False])
    np.testing.assert_allclose(fastjac.jacobian(np.sin, ok), np.diag(np.cos([1.0, 2.0])), atol=1e-9)


def test_non_analytic_code_under_the_complex_step_is_named():
    for f in (np.abs, np.real, lambda x: np.var(x) * x, lambda x: np.std(x) + x):
        with pytest.raises((ValueError, TypeError), match="not analytic"):
            fastjac.jacobian(f, X + 2, method="complex")
    import scipy.special as sp

    with pytest.raises((ValueError, TypeError), match="not analytic"):
        fastjac.jacobian(lambda x: sp.erf(x.real) + 0 * x, X, method="complex")
    J = fastjac.jacobian(np.sin, X, method="complex")  # analytic: exact to rounding
    assert np.abs(J - np.diag(np.cos(X))).max() < 1e-15
