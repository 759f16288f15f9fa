# The lazy public surface of fastjac, for type checkers and IDEs: at run time
# these names are loaded on first attribute access (see __init__.py).
from . import nn as nn
from . import reference as reference
from . import stencils as stencils
from .check import assert_backward as assert_backward
from .check import assert_grad as assert_grad
from .check import assert_jacobian as assert_jacobian
from .check import assert_jvp as assert_jvp
from .check import assert_vjp as assert_vjp
from .check import check_backward as check_backward
from .check import check_grad as check_grad
from .check import check_jacobian as check_jacobian
from .check import check_jvp as check_jvp
from .check import check_vjp as check_vjp
from .check import numeric_jacobian_test as numeric_jacobian_test
from .directional import sampled_jacobian as sampled_jacobian
from .directional import vjp as vjp
from .engine import gradient as gradient
from .engine import jacobian as jacobian
from .engine import jvp as jvp
from .engine import numeric_jacobian as numeric_jacobian
from .monitor import GradientMonitor as GradientMonitor
from .report import JacobianCheck as JacobianCheck
from .structure import batch_independent as batch_independent

__version__: str
__all__: list[str]
