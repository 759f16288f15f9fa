"""Analytic derivative rules for neural-network building blocks.

One table (:data:`RULES`) of ops, each with a forward pass, its Jacobian,
its VJP (``g`` times ``J`` without forming ``J``) and a plain-numpy
reference.  Hot paths run compiled Numba kernels or numpy, whichever was
measured faster for the size, layout and dtype (see :mod:`._dispatch` and
``docs/nn.md``); force one with ``backend="numba"`` / ``"numpy"`` or
:func:`set_backend`.  Layout follows the notebook: features on axis 0,
samples on axis 1.  Importing this module does not import Numba.

Examples
--------
>>> import numpy as np
>>> from fastjac import nn
>>> z = np.array([[1.0, 2.0], [3.0, 0.0]])
>>> nn.softmax.forward(z).sum(axis=0)
array([1., 1.])
>>> nn.softmax.jacobian(z).shape
(2, 2, 2)
"""
from ._dispatch import BACKENDS, get_backend, set_backend
from ._rules import (
    CLIP,
    RULES,
    cross_entropy,
    cross_entropy_mean,
    dense,
    dense_backward,
    dense_forward,
    describe,
    leaky_relu,
    log_softmax,
    mse,
    relu,
    sigmoid,
    softmax,
    softmax_cross_entropy,
    tanh,
)

__all__ = [
    "BACKENDS", "CLIP", "RULES", "cross_entropy", "cross_entropy_mean", "dense", "dense_backward",
    "dense_forward", "describe", "get_backend", "leaky_relu", "log_softmax", "mse", "relu",
    "set_backend", "sigmoid", "softmax", "softmax_cross_entropy", "tanh",
]
