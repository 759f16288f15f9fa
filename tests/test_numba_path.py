"""The jitted driver for ``@numba.njit`` functions that take one point at a time."""
from __future__ import annotations

import numpy as np
import pytest

numba = pytest.importorskip("numba")

import fastjac  # noqa: E402
from fastjac.engine import jacobian_with_info  # noqa: E402
from fastjac.reference import numeric_jacobian as oracle  # noqa: E402


@numba.njit
def jit_vector(x):
    # Only 1-D indexing: a batch fails to type, so "auto" must fall back.
    out = np.empty(2)
    out[0] = np.sin(x[0]) * x[1]
    out[1] = np.exp(x[1] / 4.0) + x[0] * x[2]
    return out


@numba.njit
def jit_scalar_2d(x):
    s = 0.0
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            s += np.sin(x[i, j]) * (i + 1)
    return s


def test_driver_is_used_and_agrees_with_oracle():
    x = np.array([0.3, -0.7, 1.1])
    J, info = jacobian_with_info(jit_vector, x, vectorized="auto")
    assert info.strategy == "numba"
    # Both estimates: h**2/6*|f'''| + 2 ulps*|f|/h with |f'''| <= e (bounded here by 3),
    # for the engine's h = EPS**(1/3) and the oracle's 1e-4.
    tol = sum(h ** 2 / 6 * 3 + 4 * np.finfo(float).eps * 3 / h for h in (6e-6, 1e-4))
    np.testing.assert_allclose(J, oracle(x, jit_vector.py_func), rtol=0, atol=tol)


def test_driver_scalar_output_and_2d_input():
    x = np.arange(6.0).reshape(2, 3) / 7
    J, info = jacobian_with_info(jit_scalar_2d, x, vectorized=False)
    assert info.strategy == "numba" and J.shape == (2, 3)
    expected = np.cos(x) * np.arange(1, 3)[:, None]
    np.testing.assert_allclose(J, expected, rtol=0, atol=1e-9)


def test_driver_float32():
    x = np.array([0.3, -0.7, 1.1], dtype=np.float32)
    J, info = jacobian_with_info(jit_vector, x, vectorized=False)
    # f returns float64 (np.empty(2)), so J is float64; the stack and step stay float32.
    eps = np.finfo(np.float32).eps
    assert info.strategy == "numba" and info.step.dtype == np.float32 and info.eps == eps
    h = eps ** (1 / 3) * 1.1
    # float32 truncation + round-off (|f| <= 3, 4 ulps per evaluation), plus the oracle's.
    tol = h ** 2 / 6 * 3 + 4 * eps * 3 / (h / 1.1) + 1e-7
    np.testing.assert_allclose(J, oracle(x.astype(float), jit_vector.py_func), rtol=0, atol=tol)


def test_jitted_function_that_broadcasts_is_batched():
    @numba.njit
    def jit_ufunc_like(x):
        return np.sin(x) * 2.0

    x = np.linspace(0, 1, 4)
    J, info = jacobian_with_info(jit_ufunc_like, x)
    assert info.strategy == "vectorized"
    np.testing.assert_allclose(J, np.diag(2 * np.cos(x)), atol=1e-9)


def test_typing_error_in_f_never_reaches_the_user():
    @numba.njit
    def needs_int(x):
        return x[0] + "a"  # cannot type

    with pytest.raises(TypeError, match="Numba function that cannot be compiled"):
        fastjac.jacobian(needs_int, np.ones(2))


def test_caller_array_untouched_by_driver():
    x = np.array([0.3, -0.7, 1.1])
    before = x.copy()
    fastjac.jacobian(jit_vector, x, vectorized=False)
    np.testing.assert_array_equal(x, before)
