"""fastjac.check: verdicts, guards, shapes, reports, containers, vjp/jvp, drop-in."""
import json

import numpy as np
import pytest

import fastjac
from fastjac.tolerances import TOLERANCES, tolerance_for


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def softmax(Z):
    Z = Z - np.max(Z, axis=0, keepdims=True)
    e = np.exp(Z)
    return e / np.sum(e, axis=0, keepdims=True)


Z = np.array([1.0, 2.0, 3.0])
A = sigmoid(Z)
DSIG = np.diag(A * (1 - A))


def test_correct_jacobian_passes_with_report_fields():
    r = fastjac.check_jacobian(sigmoid, Z, DSIG)
    assert r.passed and r.verdict == "pass"
    assert r.numeric.shape == (3, 3) and r.noise.shape == (3, 3)
    # The first pass is 2nd-order central at h=EPS**(1/3): truncation h**2 |f'''| / 6
    # ~ 1e-12 plus round-off EPS |f| / h ~ 4e-11.
    assert r.error_norm < 1e-10 and r.max_abs_error < 1e-10
    assert r.method == "central-2" and r.nfev > 0 and r.step.shape == (3,)
    assert np.all(r.noise >= np.abs(r.numeric - r.expected))


def test_bug_is_located_with_full_index():
    bad = DSIG.copy()
    bad[1, 1] *= 1.1
    r = fastjac.check_jacobian(sigmoid, Z, bad)
    assert not r.passed and r.verdict == "fail"
    w = r.worst[0]
    assert (w.output_index, w.input_index, w.status) == ((1,), (1,), "bug")
    assert w.second_opinion == pytest.approx(DSIG[1, 1], rel=1e-9)
    assert w.rel_error == pytest.approx(0.1 / 1.1, rel=1e-6)
    assert r.counts["bug"] == 1 and r.counts["ok"] == 8


def test_str_shows_matrices_for_small_and_table_for_large():
    bad = DSIG * 2
    text = str(fastjac.check_jacobian(sigmoid, Z, bad))
    # One word for the value under test, in the matrices' header and the table's column.
    assert "expected" in text and "numeric" in text and "worst entries" in text
    assert "analytic" not in text
    x = np.linspace(-1, 1, 40)
    text = str(fastjac.check_jacobian(np.tanh, x, np.diag(1 - np.tanh(x) ** 2) * 1.5))
    assert "[[" not in text and "out[20] / in[20]" in text  # a table, not the matrices


def test_to_dict_is_json():
    r = fastjac.check_jacobian(sigmoid, Z, DSIG * 1.1)
    d = json.loads(json.dumps(r.to_dict()))
    assert d["verdict"] == "fail" and d["worst"][0]["status"] == "bug"
    assert len(d["numeric"]) == 3


def test_noise_verdict_for_large_f_in_float32():
    # f = 1e4 + sum(x**2): round-off EPS32*1e4/h ~ 3e-2 swamps atol; a correct
    # gradient must come out "noise" or "pass", never "fail".
    x = np.linspace(-1, 1, 8).astype(np.float32)
    r = fastjac.check_grad(lambda x: np.float32(1e4) + np.sum(x ** 2), x, 2 * x)
    assert r.passed and r.verdict in ("noise", "pass")


def test_dtype_table_and_overrides():
    assert tolerance_for(np.float32, np.float64) == TOLERANCES["float32"]
    r = fastjac.check_jacobian(sigmoid, Z.astype(np.float32), DSIG.astype(np.float32))
    assert r.dtype == "float32" and r.rtol == TOLERANCES["float32"].rtol and r.passed
    r = fastjac.check_jacobian(sigmoid, Z, DSIG * 1.05, rtol=0.1)
    assert r.passed and r.rtol == 0.1
    with pytest.raises(ValueError, match="`rtol` must be"):
        fastjac.check_jacobian(sigmoid, Z, DSIG, rtol=-1)


def test_tolerance_does_not_scale_with_output_size():
    n = 400
    x = np.linspace(-1, 1, n)
    bad = np.tanh(x) * (1 + 1e-3 * (np.arange(n) == 5))
    r = fastjac.check_grad(lambda x: np.sum(np.log(np.cosh(x))), x, bad, mode="full")
    assert not r.passed and r.worst[0].input_index == (5,)


def test_notebook_dJdx_squeezes_and_says_so(capsys):
    rng = np.random.default_rng(0)
    W, b, x = rng.random((3, 4)), rng.random(3), rng.random(4)
    y = np.array([0.2, 0.0, 0.8])
    a = softmax(W @ x + b)
    dx = np.matmul((a - y).reshape(1, 3), W)
    r = fastjac.numeric_jacobian_test(x, lambda x: -np.sum(y * np.log(softmax(W @ x + b))), dx)
    out = capsys.readouterr().out
    assert out.index("analytic:") < out.index("numeric:") < out.index("error norm:")
    assert "verdict: pass" in out and "size-1 axes" in out
    assert r.passed and any("(1, 4)" in n for n in r.notes)


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(3, 3\).*\(2, 3\)"):
        fastjac.check_jacobian(sigmoid, Z, np.ones((2, 3)))
    with pytest.raises(ValueError, match="transposed"):
        fastjac.check_jacobian(lambda w: w.sum(axis=1), np.ones((2, 3)), np.ones((2, 3, 2)))


def test_nan_in_f_reported_with_positions():
    r = fastjac.check_jacobian(lambda x: x / (x - 1), np.array([0.0, 1.0 + 0.0]) + [0, 0],
                               np.eye(2)) if False else None
    with np.errstate(divide="ignore", invalid="ignore"):
        r = fastjac.check_jacobian(lambda x: np.log(x), np.array([1.0, 0.0]), np.eye(2))
    assert not r.passed and r.verdict == "nan" and "(1,)" in r.notes[0]


def test_nan_in_expected_reported():
    E = DSIG.copy()
    E[2, 0] = np.inf
    r = fastjac.check_jacobian(sigmoid, Z, E)
    assert not r.passed and r.verdict == "nan" and "(2, 0)" in r.notes[0]


def test_nan_at_perturbed_point_is_never_a_pass():
    with np.errstate(invalid="ignore"):
        r = fastjac.check_jacobian(np.sqrt, np.array([4.0, 1e-6]), np.diag([0.25, 500.0]))
    assert not r.passed and r.verdict == "nan"
    assert any("perturbed point" in n for n in r.notes)


def test_non_deterministic_f_detected():
    rng = np.random.default_rng(3)

    def noisy(x):
        return x * (1 + 1e-3 * rng.standard_normal(x.shape))
    r = fastjac.check_jacobian(noisy, Z, np.eye(3))
    assert not r.passed and r.verdict == "non-deterministic"
    assert "not deterministic" in r.notes[0]


@pytest.mark.parametrize("x0", [0.0, 1e-9])
def test_relu_kink_is_non_differentiable_not_a_bug(x0):
    x = np.array([x0, 1.0, -1.0])
    expected = np.diag((x > 0).astype(float))
    r = fastjac.check_jacobian(lambda z: np.maximum(z, 0), x, expected)
    assert r.passed and r.verdict == "non-differentiable"
    assert r.worst[0].status == "non-differentiable" and r.worst[0].input_index == (0,)


def test_kink_inside_the_step_but_not_at_x():
    # x = -3e-6 is two spacings of the second look from relu's kink: the first
    # estimate (step 6e-6) crosses it, but x lies on the flat piece, whose slope
    # 0 is the derivative: a pass, and a wrong value there is still a bug.
    x = np.array([-3e-6, 1.0, -1.0])
    expected = np.diag((x > 0).astype(float))
    r = fastjac.check_jacobian(lambda z: np.maximum(z, 0), x, expected)
    assert r.passed and r.worst[0].status == "noise" and r.worst[0].input_index == (0,)
    assert any("kink" in n and "left piece" in n for n in r.notes)
    wrong = expected.copy()
    wrong[0, 0] = 0.01
    assert fastjac.check_jacobian(lambda z: np.maximum(z, 0), x, wrong).verdict == "fail"


def test_abs_kink_with_sign_convention():
    r = fastjac.check_jacobian(np.abs, np.array([0.0, 2.0]), np.diag([1.0, 1.0]))
    assert r.verdict == "non-differentiable" and r.passed


def test_wrong_value_at_a_kink_is_still_a_bug():
    # 2 lies outside the one-sided slopes [0, 1] of relu at 0.
    r = fastjac.check_jacobian(lambda z: np.maximum(z, 0), np.array([0.0]), np.array([[2.0]]))
    assert not r.passed and r.worst[0].status == "bug"


def test_second_opinion_kills_a_truncation_false_alarm():
    # A kink 1.5 steps away corrupts the first estimate (span 2h) but not the
    # second (span 0.75h): the correct derivative must pass.
    h = np.finfo(float).eps ** 0.2
    x = np.array([1.5 * h])
    r = fastjac.check_jacobian(lambda z: np.maximum(z, 0) ** 1, x, np.array([[1.0]]))
    assert r.passed
    assert r.verdict in ("noise", "pass")


def test_check_grad_full_sampled_directional_agree_on_a_bug():
    x = np.linspace(-2, 2, 300)
    loss = lambda x: np.sum(np.log(np.cosh(x)))  # noqa: E731
    for mode in ("full", "sampled", "directional", "auto"):
        assert fastjac.check_grad(loss, x, np.tanh(x), mode=mode, seed=1).passed, mode
        assert not fastjac.check_grad(loss, x, -np.tanh(x), mode=mode, seed=1).passed, mode
    assert fastjac.check_grad(loss, x, np.tanh(x), seed=1).kind == "grad/sampled+directional"
    with pytest.raises(ValueError, match="`mode` must be one of"):
        fastjac.check_grad(loss, x, np.tanh(x), mode="partial")


def test_directional_catches_single_wrong_entry_in_float64():
    x = np.linspace(-2, 2, 2000)
    g = np.tanh(x)
    g[1234] *= 1.1
    r = fastjac.check_grad(lambda x: np.sum(np.log(np.cosh(x))), x, g, mode="directional", seed=0)
    # The failing direction is localised: the report names the entry, as a full check would.
    assert not r.passed and r.worst[0].input_index == (1234,)
    assert r.diagnoses[0].kind == "localized" and "in[1234]" in r.headline


def test_check_grad_uses_private_rng():
    np.random.seed(123)
    state = np.random.get_state()[1].copy()
    x = np.linspace(-1, 1, 500)
    r1 = fastjac.check_grad(lambda x: np.sum(x ** 3), x, 3 * x ** 2, seed=5)
    r2 = fastjac.check_grad(lambda x: np.sum(x ** 3), x, 3 * x ** 2, seed=5)
    assert np.array_equal(np.random.get_state()[1], state)
    assert np.array_equal(r1.numeric, r2.numeric)


def test_containers_name_the_wrong_key():
    rng = np.random.default_rng(2)
    W, b, X = rng.normal(size=(3, 4)), rng.normal(size=3), rng.normal(size=4)

    def f(W, b):
        return np.sum(np.tanh(W @ X + b))
    t = 1 - np.tanh(W @ X + b) ** 2
    good = {"W": np.outer(t, X), "b": t}
    assert fastjac.check_grad(f, {"W": W, "b": b}, good).passed
    r = fastjac.check_grad(f, {"W": W, "b": b}, {"W": good["W"], "b": -t})
    assert not r.passed and r.worst[0].input_index[0] == "['b']"
    r = fastjac.check_grad(f, (W, b), (good["W"].T.reshape(3, 4), t))
    assert not r.passed and r.worst[0].input_index[0] == "[0]"
    J = fastjac.check_jacobian(lambda W, b: np.tanh(W @ X + b), (W, b),
                               (np.einsum("i,ik,l->ikl", t, np.eye(3), X), np.diag(t)))
    assert J.passed and isinstance(J.numeric, tuple)


def test_check_vjp_and_jvp():
    rng = np.random.default_rng(4)
    M = rng.normal(size=(5, 7))
    x = rng.normal(size=7)
    d = 1 - np.tanh(M @ x) ** 2
    f = lambda x: np.tanh(M @ x)  # noqa: E731
    assert fastjac.check_vjp(f, x, lambda u: (u * d) @ M, seed=0).passed
    assert not fastjac.check_vjp(f, x, lambda u: u @ M, seed=0).passed          # missing term
    assert not fastjac.check_vjp(f, x, lambda u: 1.01 * (u * d) @ M, seed=0).passed
    assert fastjac.check_jvp(f, x, lambda v: d * (M @ v), seed=0).passed
    r = fastjac.check_jvp(f, x, lambda v: -d * (M @ v), seed=0)
    # 7 inputs: jvp_fn gives every column of J, compared entry by entry.
    assert not r.passed and r.diagnoses[0].kind == "sign"
    assert isinstance(r.worst[0].input_index, tuple)
    with pytest.raises(ValueError, match="shaped like x"):
        fastjac.check_vjp(f, x, lambda u: np.ones(3), seed=0)


def test_assert_helpers_raise_with_the_report():
    fastjac.assert_jacobian(sigmoid, Z, DSIG)
    with pytest.raises(AssertionError, match="verdict: fail"):
        fastjac.assert_jacobian(sigmoid, Z, DSIG * 2)
    x = np.linspace(-1, 1, 5)
    with pytest.raises(AssertionError, match="bug"):
        fastjac.assert_grad(lambda x: np.sum(x ** 2), x, x)
    M = np.arange(6.0).reshape(2, 3)
    with pytest.raises(AssertionError):
        fastjac.assert_vjp(lambda x: M @ x, np.ones(3), lambda u: 2 * u @ M, seed=0)
    with pytest.raises(AssertionError):
        fastjac.assert_jvp(lambda x: M @ x, np.ones(3), lambda v: 2 * M @ v, seed=0)


def test_unknown_option_and_method_errors():
    with pytest.raises(TypeError, match="unexpected keyword"):
        fastjac.check_jacobian(sigmoid, Z, DSIG, tolerance=1)
    with pytest.raises(ValueError, match="`method` must be one of"):
        fastjac.check_jacobian(sigmoid, Z, DSIG, method="centre")


@pytest.mark.parametrize("method", ["central", "forward", "backward", "complex"])
def test_every_method_passes_correct_and_fails_wrong(method):
    assert fastjac.check_jacobian(sigmoid, Z, DSIG, method=method).passed
    assert not fastjac.check_jacobian(sigmoid, Z, DSIG * 1.01, method=method).passed


def test_caller_arrays_untouched():
    x, E = Z.copy(), DSIG.copy()
    fastjac.check_jacobian(sigmoid, x, E * 2)
    assert np.array_equal(x, Z) and np.array_equal(E, DSIG)


def test_relative_error_of_zero_entries_is_not_a_hundred_percent():
    """An analytic 0 against a numeric -1e-17 is agreement, not a 100% error:
    relative errors are taken against max(|expected|, |numeric|, atol)."""
    x = np.array([0.5, -1.0, 2.0])
    wrong = np.diag(1 - np.tanh(x) ** 2) * 1.01
    report = fastjac.check_jacobian(np.tanh, x, wrong)
    assert not report.passed
    # The only real errors are the 1% ones on the diagonal.
    assert report.max_rel_error == pytest.approx(0.01 / 1.01, rel=1e-3)
    assert all(w.rel_error < 0.02 for w in report.worst)


def test_a_report_is_unchanged_by_later_checks_on_the_same_thread():
    """Directional checks draw their directions into a per-thread buffer that
    the next check reuses: a report read after later checks must say what it
    said when it was made (its figures are computed on first read)."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=5000)
    loss = lambda v: np.sum(np.sin(v) ** 2, axis=-1)  # noqa: E731
    grad = np.sin(2 * x)
    wrong = grad.copy()
    wrong[17] += 1.0

    def fields(r):
        return (r.verdict, r.error_norm, r.max_abs_error, [str(w) for w in r.worst],
                np.asarray(r.noise).tolist(), str(r))

    fastjac.check_grad(loss, x, wrong)  # the plan's probe (nfev) out of the way
    fresh = fields(fastjac.check_grad(loss, x, wrong))
    kept = fastjac.check_grad(loss, x, wrong)
    for seed in range(3):  # other checks, other directions, same buffers
        fastjac.check_grad(loss, rng.normal(size=5000), grad, seed=seed + 1)
        fastjac.check_grad(lambda v: np.sum(v ** 3, axis=-1), x, 3 * x ** 2, seed=seed)
    assert fields(kept) == fresh
