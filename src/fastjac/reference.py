"""The element-by-element numeric Jacobian of the reference notebook.

This is the oracle in fastjac's tests and the baseline in its benchmarks.
It is kept deliberately simple: one element at a time, two calls of ``f``
per element, a fixed absolute step.  Do not optimise it.
"""
from __future__ import annotations

import numpy as np

__all__ = ["numeric_jacobian"]


def numeric_jacobian(x, f, epsilon=1e-4):
    """Central differences, one element at a time (the notebook's loop).

    Parameters
    ----------
    x : array_like
        The point.  It is copied, never modified.
    f : callable
        ``f(x)`` returns a scalar or an array.
    epsilon : float, optional
        Fixed absolute step.  Default 1e-4, as in the notebook.

    Returns
    -------
    J : ndarray, shape ``np.shape(f(x)) + x.shape``

    Examples
    --------
    >>> import numpy as np
    >>> from fastjac.reference import numeric_jacobian
    >>> numeric_jacobian(np.array([1.0, 2.0]), lambda x: x ** 2).round(6)
    array([[2., 0.],
           [0., 4.]])
    """
    x = np.array(x, copy=True)
    if x.dtype.kind in "biu":  # the notebook assumes floats; ints would truncate
        x = x.astype(np.float64)
    a = f(x)
    a_shape = () if np.isscalar(a) else np.shape(a)
    result = np.zeros(a_shape + x.shape)
    for index, y in np.ndenumerate(x):
        x[index] = y - epsilon
        f_prev = f(x)
        x[index] = y + epsilon
        f_next = f(x)
        x[index] = y
        result[(...,) + index] = (np.asarray(f_next) - np.asarray(f_prev)) / (2 * epsilon)
    return result
