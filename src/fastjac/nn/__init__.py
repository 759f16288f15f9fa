"""Analytic derivative rules for neural-network building blocks.

One table (:data:`RULES`) of ops, each with a forward pass, its Jacobian,
its VJP (``g`` times ``J`` without forming ``J``) and a plain-numpy
reference, with one signature for every op::

    forward(*args, axis=0, out=None, backend=None)
    jacobian(*args, axis=0, out=None, backend=None)
    vjp(*args, g, axis=0, out=None, backend=None)

Families: elementwise activations (``sigmoid``, ``tanh``, ``relu``,
``leaky_relu``, and :class:`LeakyReLU` for another slope), normalizers (``softmax``, ``log_softmax``), losses
(``cross_entropy``, ``cross_entropy_mean``, ``mse``,
``softmax_cross_entropy``) and the dense layer (``dense``,
``dense_forward``, ``dense_backward``).  Layout follows the notebook:
features on axis 0 (``axis=``), samples on axis 1.

Hot paths run compiled Numba kernels, numpy, or numpy's SIMD
transcendental followed by one compiled pass, whichever was measured
fastest for the size and dtype (``docs/nn.md``); force one with
``backend="numba"`` / ``"numpy"`` or :func:`set_backend`.  Importing this
module does not import Numba.

Examples
--------
>>> import numpy as np
>>> from fastjac import nn
>>> z = np.array([[1.0, 2.0], [3.0, 0.0]])
>>> nn.softmax.forward(z).sum(axis=0)
array([1., 1.])
>>> nn.softmax.jacobian(z).shape
(2, 2, 2)
>>> nn.sigmoid.vjp(np.zeros(3), np.ones(3))
array([0.25, 0.25, 0.25])
"""
from ._dispatch import BACKENDS, get_backend, set_backend
from ._rules import (
    CLIP,
    LeakyReLU,
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
    "BACKENDS", "CLIP", "LeakyReLU", "RULES", "cross_entropy", "cross_entropy_mean", "dense", "dense_backward",
    "dense_forward", "describe", "get_backend", "leaky_relu", "log_softmax", "mse", "relu",
    "set_backend", "sigmoid", "softmax", "softmax_cross_entropy", "tanh",
]
