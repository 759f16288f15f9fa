"""Every diagnosis names the bug a user made, not a direction or a column number.

One test per rule of ``fastjac._checking.diagnose``: each builds the bug the
rule is there for, on a small layer, and asserts both the kind and that the
message says what a user would fix.  Correct versions pass, so a rule that
fires on correct code would show here too.
"""
import re

import numpy as np
import pytest

import fastjac

RNG = np.random.default_rng(7)
X = RNG.normal(size=(8, 5))
Y = np.eye(3)[RNG.integers(0, 3, 8)]
W = 0.3 * RNG.normal(size=(5, 3))


def _probabilities(W):
    Z = X @ W
    Z = Z - Z.max(axis=1, keepdims=True)
    return np.exp(Z) / np.exp(Z).sum(axis=1, keepdims=True)


def loss(W):
    return -np.mean(np.sum(Y * np.log(_probabilities(W)), axis=1))


def grad(W):
    return X.T @ (_probabilities(W) - Y) / len(X)


def _first(report):
    assert not report.passed, report
    return report.diagnoses[0]


def test_correct_gradient_passes_with_no_diagnosis():
    r = fastjac.check_grad(loss, W, grad(W))
    assert r.passed and r.diagnoses == []


def test_a_transpose_before_a_reshape_is_named_as_a_layout_bug():
    d = _first(fastjac.check_grad(loss, W, grad(W).T.reshape(W.shape)))
    assert d.kind == "layout"
    assert "wrong order" in d.message and "(5, 3)" in d.message and ".T.reshape" in d.message


def test_fortran_order_of_a_three_axis_input_is_named():
    x = RNG.normal(size=(2, 3, 4))
    g = np.cos(x)
    d = _first(fastjac.check_grad(lambda v: np.sum(np.sin(v)), x,
                                  np.asfortranarray(g).ravel(order="F").reshape(x.shape)))
    # ravel(order="F") then a C reshape: every axis of x reversed.
    assert d.kind == "layout" and "(2, 1, 0)" in d.evidence


def test_a_transposed_square_matrix_argument_is_named():
    A, C, D = (RNG.normal(size=(4, 4)) for _ in range(3))
    f = lambda A: np.sum(C * np.tanh(A @ D))  # noqa: E731
    good = (C * (1 - np.tanh(A @ D) ** 2)) @ D.T
    assert fastjac.check_grad(f, A, good).passed
    d = _first(fastjac.check_grad(f, A, good.T))
    assert d.kind == "transpose" and "transposed" in d.message


def test_a_transposed_jacobian_is_named():
    M = RNG.normal(size=(4, 4))
    x = RNG.normal(size=4)
    J = np.diag(1 - np.tanh(M @ x) ** 2) @ M
    d = _first(fastjac.check_jacobian(lambda v: np.tanh(M @ v), x, J.T))
    assert d.kind == "transpose" and "transposed" in d.message


def test_a_missing_mean_is_named_after_the_axis_it_belongs_to():
    Xb = RNG.normal(size=(6, 4))
    w = RNG.normal(size=4)
    f = lambda Z: np.mean(np.tanh(Z @ w))  # noqa: E731
    good = np.outer(1 - np.tanh(Xb @ w) ** 2, w) / 6
    assert fastjac.check_grad(f, Xb, good).passed
    d = _first(fastjac.check_grad(f, Xb, good * 6))
    assert d.kind == "factor" and "6 = axis 0 of x" in d.message


def test_a_sign_flip_is_named():
    d = _first(fastjac.check_grad(loss, W, -grad(W)))
    assert d.kind == "sign" and "sign flip" in d.message


def test_one_wrong_entry_is_named_with_its_index():
    g = grad(W).copy()
    g[2, 1] *= 1.1
    d = _first(fastjac.check_grad(loss, W, g))
    assert d.kind == "entry" and "in[2, 1]" in d.message and "1.1x" in d.message


def test_one_wrong_output_row_is_named():
    M = RNG.normal(size=(4, 3))
    x = RNG.normal(size=3)
    J = np.diag(1 - np.tanh(M @ x) ** 2) @ M
    J[2] = J[2] + np.array([0.3, -0.1, 0.2])
    d = _first(fastjac.check_jacobian(lambda v: np.tanh(M @ v), x, J))
    assert d.kind == "row" and "out[2]" in d.message


def test_one_wrong_input_column_is_named():
    M = RNG.normal(size=(4, 3))
    x = RNG.normal(size=3)
    J = np.diag(1 - np.tanh(M @ x) ** 2) @ M
    J[:, 1] = J[:, 1] + np.array([0.3, -0.1, 0.2, 0.05])
    d = _first(fastjac.check_jacobian(lambda v: np.tanh(M @ v), x, J))
    assert d.kind == "column" and "in[1]" in d.message


def test_swapped_derivatives_of_two_inputs_are_named():
    a, b = RNG.normal(size=3), RNG.normal(size=3)
    f = lambda a, b: np.sum(np.sin(a) * b ** 2)  # noqa: E731
    ga, gb = np.cos(a) * b ** 2, 2 * np.sin(a) * b
    assert fastjac.check_grad(f, (a, b), (ga, gb)).passed
    d = _first(fastjac.check_grad(f, (a, b), (gb, ga)))
    assert d.kind == "swapped" and "x[0]" in d.message and "x[1]" in d.message


def test_the_one_wrong_input_of_several_is_named():
    a, b = RNG.normal(size=3), RNG.normal(size=4)
    f = lambda a, b: np.sum(np.sin(a)) * np.sum(b ** 2)  # noqa: E731
    ga, gb = np.cos(a) * np.sum(b ** 2), 2 * b * np.sum(np.sin(a))
    kinds = {d.kind: d for d in fastjac.check_grad(f, {"a": a, "b": b},
                                                   {"a": ga, "b": gb + 0.5}).diagnoses}
    assert "input" in kinds and "x['b']" in kinds["input"].message


def test_the_wrong_input_leads_with_the_pattern_of_its_error():
    a, b = RNG.normal(size=3), RNG.normal(size=4)
    f = lambda a, b: np.sum(np.sin(a)) * np.sum(b ** 2)  # noqa: E731
    ga, gb = np.cos(a) * np.sum(b ** 2), 2 * b * np.sum(np.sin(a))
    d = _first(fastjac.check_grad(f, {"a": a, "b": b}, {"a": ga, "b": gb / 8}))
    assert d.kind == "input" and "x['b']" in d.message
    assert "1/8" in d.message or "0.125" in d.message, d.message


@pytest.mark.parametrize("n", [10_000, 200_000])
def test_a_large_check_names_the_wrong_entry_not_a_direction(n):
    x = np.linspace(-1, 1, n)
    g = np.tanh(x)
    g[n // 3] += 0.5
    r = fastjac.check_grad(lambda v: np.sum(np.log(np.cosh(v))), x, g)
    assert not r.passed
    where = [d for d in r.diagnoses if d.kind == "localized"]
    assert where and f"in[{n // 3}]" in where[0].message
    assert f"in[{n // 3}]" in r.headline and not re.search(r"direction \d", r.headline)
    # The search costs about log2(n) evaluations, and the report says how many.
    found = r.worst[0]
    assert found.input_index == (n // 3,) and found.search_evaluations <= 2 * np.log2(n)
    assert f"{found.search_evaluations} evaluations" in where[0].evidence
