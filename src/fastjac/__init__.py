"""fastjac: fast, trustworthy numeric Jacobians and derivative checks.

``import fastjac`` is nearly free: every public name is loaded on first
attribute access (the engine brings numpy; Numba is imported, and kernels
compiled, only on first use).  That keeps the pytest plugin, which imports
this package, from slowing down test suites that never use it.
"""
from importlib import import_module

__version__ = "0.1.0"

# Public name -> module that defines it, loaded on first access.
_LAZY = {
    "jacobian": "engine", "gradient": "engine", "jvp": "engine", "numeric_jacobian": "engine",
    "check_jacobian": "check", "check_grad": "check", "check_vjp": "check",
    "check_jvp": "check", "assert_jacobian": "check", "assert_grad": "check",
    "assert_vjp": "check", "assert_jvp": "check", "numeric_jacobian_test": "check",
    "check_backward": "check", "assert_backward": "check",
    "JacobianCheck": "report",
    "sampled_jacobian": "directional", "vjp": "directional",
    "batch_independent": "structure",
    "GradientMonitor": "monitor",
    "nn": None, "reference": None, "stencils": None,
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'fastjac' has no attribute {name!r}")
    module = _LAZY[name]
    value = import_module(f".{name if module is None else module}", __name__)
    if module is not None:
        value = getattr(value, name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
