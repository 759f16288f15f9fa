"""Error bounds for finite-difference estimates, used to set test tolerances.

For a stencil of order ``p`` with offsets ``c_s`` and weights ``w_s`` and a
step ``h``, the estimate ``sum_s w_s f(x + c_s h) / h`` differs from ``f'(x)`` by

* truncation: the Taylor remainder.  The stencil is exact on polynomials of
  degree ``p``, so the error is at most
  ``h**p * D_{p+1} * sum_s |w_s| |c_s|**(p+1) / (p+1)!`` where ``D_{p+1}``
  bounds ``|f^(p+1)|`` on ``[x - max|c| h, x + max|c| h]``;
* round-off: each evaluation carries an absolute error ``f_err`` and the
  perturbed point ``x + c h`` is rounded by up to ``eps |x + c h|``, which
  moves ``f`` by ``|f'| eps |x + c h|``.  Summed with the weights and divided
  by ``h``: ``sum_s |w_s| (f_err + D_1 eps (|x| + |c_s| h)) / h``.

The complex step has no subtraction: its round-off is ``f_err``-relative to
the derivative, ``~ eps * D_1``, and its truncation ``h**2 D_3 / 6``.
"""
from __future__ import annotations

from math import factorial

import numpy as np

# Elementary functions and matrix products are accurate to a few ulps per
# operation; this constant counts ulps per evaluation in the models below.
ULPS_PER_OP = 4


def truncation_bound(stencil, h, dmax):
    """Largest truncation error for derivative bound ``dmax = max |f^(p+1)|``."""
    p = stencil.order
    if stencil.complex_step:
        return np.asarray(h) ** 2 * dmax / 6.0
    coef = sum(abs(w) * abs(c) ** (p + 1) for c, w in zip(stencil.offsets, stencil.weights))
    return np.asarray(h) ** p * dmax * coef / factorial(p + 1)


def roundoff_bound(stencil, h, f_err, d1=0.0, x_abs=0.0, eps=np.finfo(float).eps):
    """Largest round-off error given an absolute evaluation error ``f_err``."""
    h = np.asarray(h, dtype=float)
    if stencil.complex_step:
        return ULPS_PER_OP * eps * d1 + 0 * h
    total = 0.0
    for c, w in zip(stencil.offsets, stencil.weights):
        if c == 0:
            total = total + abs(w) * f_err
        else:
            total = total + abs(w) * (f_err + d1 * eps * (np.asarray(x_abs) + abs(c) * h))
    return total / h


def fd_error_bound(stencil, h, *, dmax, f_err, d1, x_abs, eps):
    """Truncation plus round-off: the most a correct estimate may be off by."""
    return truncation_bound(stencil, h, dmax) + roundoff_bound(stencil, h, f_err, d1, x_abs, eps)
