"""The pytest plugin: fixture, ini options, seed option, and a light import."""
import subprocess
import sys

import pytest

pytest_plugins = ["pytester"]

GOOD_AND_BAD = """
import numpy as np

def sig(z):
    return 1 / (1 + np.exp(-z))

Z = np.array([1.0, 2.0, 3.0])
A = sig(Z)

def test_good(jacobian_check):
    report = jacobian_check.jacobian(sig, Z, np.diag(A * (1 - A)))
    assert report.passed

def test_bad(jacobian_check):
    jacobian_check.jacobian(sig, Z, np.diag(A))

def test_grad_uses_seed(jacobian_check):
    x = np.linspace(-1, 1, 500)
    report = jacobian_check.grad(lambda x: np.sum(np.log(np.cosh(x))), x, np.tanh(x))
    print("SEED", jacobian_check.seed, report.kind)
"""


def test_fixture_passes_and_fails_with_the_report(pytester):
    pytester.makepyfile(GOOD_AND_BAD)
    result = pytester.runpytest("-s", "--fastjac-seed=7")
    result.assert_outcomes(passed=2, failed=1)
    # The failure message is the report: verdict, the worst entry with its index.
    result.stdout.fnmatch_lines(["*SEED 7 grad/sampled+directional*", "*verdict: fail*",
                                 "*bug*out[[]0[]] / in[[]0[]]*"])


def test_ini_tolerances_reach_the_checks(pytester):
    pytester.makeini("[pytest]\nfastjac_rtol = 0.5\nfastjac_atol = 0.5\nfastjac_method = forward\n")
    pytester.makepyfile("""
import numpy as np

def test_loose(jacobian_check):
    z = np.array([1.0, 2.0])
    # 20% off: passes only because the ini tolerance is 0.5
    report = jacobian_check.jacobian(np.exp, z, np.diag(np.exp(z)) * 1.2)
    assert report.rtol == 0.5 and report.atol == 0.5
    assert report.method.startswith("forward")
""")
    result = pytester.runpytest()
    result.assert_outcomes(passed=1)


def test_bad_ini_value_is_a_usage_error(pytester):
    pytester.makeini("[pytest]\nfastjac_rtol = tight\n")
    pytester.makepyfile("def test_x(jacobian_check):\n    pass\n")
    result = pytester.runpytest()
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*`fastjac_rtol` must be a number*"])


def _modules_after(statement):
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def test_plugin_import_loads_no_numba_and_no_checks():
    loaded = _modules_after("import fastjac.pytest_plugin")
    assert not {"numba", "llvmlite", "fastjac.check", "fastjac._report", "scipy"} & loaded


def test_plugin_adds_nothing_to_import_fastjac():
    base = _modules_after("import fastjac, pytest")
    extra = _modules_after("import fastjac.pytest_plugin") - base
    assert extra == {"fastjac.pytest_plugin"}


def test_plugin_import_has_no_numpy_once_fastjac_is_lazy():
    # The plugin itself imports only pytest; numpy arrives through the package
    # __init__ as long as it imports the engine eagerly.
    if "numpy" in _modules_after("import fastjac"):
        pytest.skip("fastjac/__init__.py imports the engine (numpy) eagerly")
    assert "numpy" not in _modules_after("import fastjac.pytest_plugin")


def test_plugin_self_import_time_is_small():
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import fastjac.pytest_plugin"],
                         capture_output=True, text=True, check=True)
    line = next(ln for ln in out.stderr.splitlines() if ln.rstrip().endswith("fastjac.pytest_plugin"))
    self_us = int(line.split("|")[0].split(":")[1])
    # Its own body is a few function definitions: well under 50 ms even on a loaded CI box.
    assert self_us < 50_000


WRONG_FACTOR = """
import numpy as np
import fastjac

def test_factor(jacobian_check):
    x = np.linspace(0.1, 1.0, 4)
    jacobian_check.jacobian(np.sin, x, 3 * np.diag(np.cos(x)))

def test_plain_assert():
    x = np.linspace(0.1, 1.0, 4)
    fastjac.assert_grad(lambda v: np.sum(v ** 2), x, -2 * x)

def test_layer(jacobian_check):
    def forward(X, W):
        return X @ W, (X, W)
    def backward(dout, cache):
        X, W = cache
        return dout @ W.T, 2 * X.T @ dout   # wrong: a stray factor 2
    X, W = np.arange(12.0).reshape(4, 3) / 7, np.arange(9.0).reshape(3, 3)
    jacobian_check.backward(forward, backward, X, W, names=("X", "W"))
"""


def test_failures_show_the_verdict_and_diagnosis_first_and_hide_fastjac_frames(pytester,
                                                                               monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # room for the short summary's message
    pytester.makepyfile(WRONG_FACTOR)
    result = pytester.runpytest("-rf")
    result.assert_outcomes(failed=3)
    out = result.stdout.str()
    # The assertion's first line (and so pytest's short summary): verdict and diagnosis.
    result.stdout.fnmatch_lines([
        "FAILED *test_factor - AssertionError: fastjac jacobian check: FAIL (verdict: fail): "
        "a missing or extra factor 3*",
        "FAILED *test_plain_assert - AssertionError: fastjac grad/full check: FAIL (verdict: "
        "fail): a sign flip*",
        "FAILED *test_layer - AssertionError: fastjac backward check: FAIL (verdict: fail)*"])
    assert "x['W']" in out
    # fastjac's own frames are hidden: the traceback shows the test's lines only.
    assert "fastjac/check.py" not in out and "pytest_plugin.py" not in out
