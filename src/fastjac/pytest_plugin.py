"""pytest plugin: the ``jacobian_check`` fixture and fastjac's ini options.

Registered through the ``pytest11`` entry point, so it loads in every pytest
run of an environment where fastjac is installed: importing it must cost
almost nothing.  It imports neither numpy, nor numba, nor ``fastjac.check``
at import time; the fixture imports the checks on first use.

ini options (``pytest.ini`` / ``[tool.pytest.ini_options]``)::

    fastjac_rtol = 1e-6        # default rtol of every check (else the dtype table)
    fastjac_atol = 1e-9
    fastjac_method = central   # finite-difference method of the checks

command line::

    --fastjac-seed=N           # seed of the random directions/coordinates

Example::

    def test_sigmoid(jacobian_check):
        jacobian_check.jacobian(sigmoid, z, np.diag(a * (1 - a)))
        jacobian_check.grad(loss, W, dW)
        jacobian_check.backward(layer_forward, layer_backward, X, W, b)

On failure the ``AssertionError``'s first line is the verdict and the
diagnosis (what pytest's short summary shows), and fastjac's own frames are
hidden from the traceback.
"""
from __future__ import annotations

import pytest

_INI = (
    ("fastjac_rtol", "default rtol of fastjac checks (default: fastjac.tolerances table by dtype)"),
    ("fastjac_atol", "default atol of fastjac checks (default: fastjac.tolerances table by dtype)"),
    ("fastjac_method", "finite-difference method of fastjac checks (default: central)"),
)


def pytest_addoption(parser):
    for name, help_text in _INI:
        parser.addini(name, help_text, default=None)
    group = parser.getgroup("fastjac")
    group.addoption("--fastjac-seed", action="store", type=int, default=None,
                    help="seed of fastjac's random directions and sampled coordinates "
                         "(default: a fixed seed, 0)")


def _float_ini(config, name):
    value = config.getini(name)
    if value in (None, "", []):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise pytest.UsageError(f"`{name}` must be a number; got {value!r}.") from None


class JacobianChecker:
    """Assertions with the project's defaults; each returns the report on success.

    On failure ``AssertionError`` carries the full report (worst entries,
    noise, verdict), which pytest prints.
    """

    def __init__(self, rtol=None, atol=None, method=None, seed=0):
        self.rtol, self.atol, self.method, self.seed = rtol, atol, method, seed
        self.reports = []

    def _options(self, kwargs, seeded):
        opts = {"rtol": self.rtol, "atol": self.atol}
        if self.method is not None:
            opts["method"] = self.method
        if seeded:
            opts["seed"] = self.seed
        opts.update(kwargs)
        return opts

    def _record(self, report):
        self.reports.append(report)
        return report

    def jacobian(self, f, x, expected, **kwargs):
        __tracebackhide__ = True  # a failure points at the test's line, not fastjac's
        from fastjac.check import assert_jacobian

        return self._record(assert_jacobian(f, x, expected, **self._options(kwargs, True)))

    def grad(self, f, x, grad, **kwargs):
        __tracebackhide__ = True
        from fastjac.check import assert_grad

        return self._record(assert_grad(f, x, grad, **self._options(kwargs, True)))

    def vjp(self, f, x, vjp_fn, **kwargs):
        __tracebackhide__ = True
        from fastjac.check import assert_vjp

        return self._record(assert_vjp(f, x, vjp_fn, **self._options(kwargs, True)))

    def jvp(self, f, x, jvp_fn, **kwargs):
        __tracebackhide__ = True
        from fastjac.check import assert_jvp

        return self._record(assert_jvp(f, x, jvp_fn, **self._options(kwargs, True)))

    def backward(self, forward, backward, *inputs, **kwargs):
        """:func:`fastjac.check_backward` of a layer's forward/backward pair."""
        __tracebackhide__ = True
        from fastjac.check import assert_backward

        return self._record(assert_backward(forward, backward, *inputs,
                                            **self._options(kwargs, True)))


@pytest.fixture
def jacobian_check(request):
    """A :class:`JacobianChecker` using the ini defaults and ``--fastjac-seed``."""
    config = request.config
    method = config.getini("fastjac_method") or None
    seed = config.getoption("fastjac_seed")
    return JacobianChecker(rtol=_float_ini(config, "fastjac_rtol"),
                           atol=_float_ini(config, "fastjac_atol"),
                           method=method, seed=0 if seed is None else seed)


def pytest_report_header(config):
    seed = config.getoption("fastjac_seed", None)
    if seed is not None:
        return f"fastjac: --fastjac-seed={seed}"
    return None
