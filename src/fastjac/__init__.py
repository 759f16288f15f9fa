"""fastjac: fast, trustworthy numeric Jacobians and derivative checks.

``import fastjac`` is light: it imports numpy only.  Numba is imported and
kernels are compiled on first use.
"""
from .engine import gradient, jacobian, jvp, numeric_jacobian
from .stencils import STENCILS

__version__ = "0.1.0"

__all__ = ["jacobian", "gradient", "jvp", "numeric_jacobian", "STENCILS", "__version__"]
