"""Elementwise activations: sigmoid, tanh, relu, leaky_relu.

``a = f(z)`` elementwise, so the Jacobian is diagonal: ``jacobian`` returns
the diagonal ``f'(z)`` (shape of ``z``), or with ``dense=True`` the stack
``diag(f'(z))`` per sample.

Dispatch (measured by the benchmark groups ``nn|{op}|{method}|B={B}|n={n}``
and ``nn|{op}|{method}.float32|B={B}|n={n}`` of ``benchmarks/bench_nn.py``):
numpy's ``exp`` and ``tanh`` are SIMD-vectorised and Numba's are scalar
libm, so the all-compiled kernel wins only while numpy's ~0.4 us per ufunc
call dominates; above that the *hybrid* path lets numpy compute
``exp(-|z|)`` or ``tanh(z)`` and one compiled pass does the rest.  ReLU
and leaky ReLU have no transcendental: their kernel wins at every size.

Fast path: a call with float32/float64 ndarrays of matching shape and
dtype, no ``out``, ``backend`` and ``axis`` left at their defaults and the
process default ``"auto"`` skips validation and goes straight to the
implementation picked for its size (the first call in each dtype validates,
compiles and fills the table).
"""
from __future__ import annotations

import numpy as np

from ._base import Rule
from ._common import (DEFAULT_AXIS, F32, F64, Sample, check_axis, check_out, empty_like_c, finish, float_array,
                      pair, scalar, to_2d)
from ._dispatch import Crossover, Route, defaults
from ._kernels.activations import (SIGMOID, TANH, k_leaky_relu, k_neg_abs, k_piecewise_grad, k_relu_grad,
                                   k_sigmoid, k_sigmoid_from_e, k_smooth_grad, k_smooth_grad_from)

__all__ = ["Elementwise", "LeakyReLU", "leaky_relu", "relu", "sigmoid", "tanh"]

_ndarray = np.ndarray
_empty = np.empty


class Elementwise(Rule):
    """An elementwise activation ``a = f(z)``; its Jacobian is diagonal.

    Every method takes ``axis``, ``out`` and ``backend``.  ``axis`` (the
    feature axis) only matters for ``jacobian(..., dense=True)``; elsewhere it
    is checked to be valid for ``z`` and otherwise ignored.  ``backend``
    picks the implementation (see :mod:`fastjac.nn`).

    Parameters
    ----------
    name, formula, derivative : str
    forward : Route
        Implementations ``f(z, out)`` writing ``f(z)`` into ``out``.
    grad : Route
        Implementations ``f(z, g, out)`` writing ``g * f'(z)`` into ``out``
        (``f'(z)`` itself when ``g`` is None).
    df_ref : callable
        The notebook-style derivative ``f'(z)`` (test oracle).
    plain : dict
        ``{method: function}``, the plain numpy expression of each method.
    direct_forward : (ufunc, dict or None), optional
        For a forward that is one numpy ufunc at every size: the ufunc and
        its second operand per dtype (None for a unary ufunc).  The fast
        path calls it and lets it allocate (``np.empty`` plus ``out=``, or a
        Python wrapper, would cost more than the ufunc on small input).
    """

    kind = "elementwise"

    def __init__(self, name, *, forward, grad, df_ref, formula, derivative, plain, direct_forward=None):
        self.name = name
        self.formula = formula
        self.derivative = derivative
        self.routes = {"forward": forward, "jacobian": grad, "vjp": grad}
        self.thresholds = {"forward": forward.crossover, "vjp": grad.crossover}
        self.vjp_threshold = grad.crossover
        self.plain = plain
        self._df_ref = df_ref
        self._forward_fast = forward.fast
        self._grad_fast = grad.fast
        self._direct_forward = direct_forward

    # -------------------------------------------------------------- public methods
    def forward(self, z, *, axis=0, out=None, backend=None):
        """``f(z)`` elementwise.

        Parameters
        ----------
        z : array_like, shape (...)
        axis : int, optional
            Accepted for the common signature; an elementwise op does not
            depend on it (it must still be valid for ``z``).
        out : ndarray, shape of z, optional
        backend : {None, "auto", "numba", "numpy"}, optional

        Returns
        -------
        a : ndarray, shape of z, dtype of z (float32 stays float32)
        """
        if type(z) is _ndarray and out is None and backend is None and axis is DEFAULT_AXIS and defaults.auto:
            direct = self._direct_forward
            if direct is not None:
                ufunc, operands = direct
                if operands is None:
                    if z.dtype is F64 or z.dtype is F32:
                        return ufunc(z)
                else:
                    operand = operands.get(z.dtype)
                    if operand is not None:
                        return ufunc(z, operand)
            entry = self._forward_fast.get(z.dtype)
            if entry is not None:
                res = _empty(z.shape, z.dtype)
                (entry[1] if z.size <= entry[0] else entry[2])(z, res)
                return res
        scalar_in = np.ndim(z) == 0 and not isinstance(z, np.ndarray)
        z = float_array(z, "z")
        self._check_axis(axis, z.ndim)
        out = check_out(out, z.shape, z.dtype, (z,))
        impl = self.routes["forward"].pick(backend, z.size, 1, z.dtype)
        res = empty_like_c(z.shape, z.dtype, out)
        impl(z, res)
        res = finish(res, out)
        return res[()] if scalar_in else res

    __call__ = forward

    def jacobian(self, z, *, dense=False, axis=0, out=None, backend=None):
        """The diagonal of the Jacobian ``f'(z)``, or the dense stack per sample.

        Parameters
        ----------
        z : array_like, shape (...); at least 1-D with ``dense=True``
        dense : bool, optional
            If True return ``diag(f'(z))`` per sample, shape
            ``batch_shape + (n, n)`` (``(n, n)`` for 1-D ``z``), features
            along ``axis``.
        axis : int, optional
            The feature axis for ``dense=True``.  Default 0 (notebook layout).
        out : ndarray, optional
            Shape of ``z``, or ``batch_shape + (n, n)`` with ``dense=True``.
        backend : {None, "auto", "numba", "numpy"}, optional

        Returns
        -------
        ndarray
            ``f'(z)`` (shape of z), or the dense stack.
        """
        if (not dense and type(z) is _ndarray and out is None and backend is None and axis is DEFAULT_AXIS
                and defaults.auto):
            entry = self._grad_fast.get(z.dtype)
            if entry is not None:
                res = _empty(z.shape, z.dtype)
                (entry[1] if z.size <= entry[0] else entry[2])(z, None, res)
                return res
        z = float_array(z, "z", 1 if dense else 0)
        self._check_axis(axis, z.ndim)
        impl = self.routes["jacobian"].pick(backend, z.size, 1, z.dtype)
        if not dense:
            out = check_out(out, z.shape, z.dtype, (z,))
            res = empty_like_c(z.shape, z.dtype, out)
            impl(z, None, res)
            return finish(res, out)
        d = _empty(z.shape, z.dtype)
        impl(z, None, d)
        d2, batch = to_2d(d, check_axis(axis, z.ndim))
        n, B = d2.shape
        out = check_out(out, batch + (n, n), z.dtype, (z,))
        J = np.zeros(batch + (n, n), dtype=z.dtype) if out is None else out
        if out is not None:
            J[...] = 0
        idx = np.arange(n)
        J.reshape(B, n, n)[:, idx, idx] = d2.T
        return J

    def vjp(self, z, g, *, axis=0, out=None, backend=None):
        """``g * f'(z)`` without forming the Jacobian.

        Parameters
        ----------
        z : array_like, shape (...)
        g : array_like, shape of z
        axis : int, optional
            Accepted for the common signature; checked, otherwise ignored.
        out : ndarray, shape of z, optional
        backend : {None, "auto", "numba", "numpy"}, optional

        Returns
        -------
        ndarray, shape of z
        """
        if (type(z) is _ndarray and type(g) is _ndarray and out is None and backend is None
                and axis is DEFAULT_AXIS and defaults.auto):
            dt = z.dtype
            entry = self._grad_fast.get(dt)
            if entry is not None and g.dtype is dt and g.shape == z.shape:
                res = _empty(z.shape, dt)
                (entry[1] if z.size <= entry[0] else entry[2])(z, g, res)
                return res
        z, g = pair(z, g)
        self._check_axis(axis, z.ndim)
        out = check_out(out, z.shape, z.dtype, (z, g))
        impl = self.routes["vjp"].pick(backend, z.size, 1, z.dtype)
        res = empty_like_c(z.shape, z.dtype, out)
        impl(z, g, res)
        return finish(res, out)

    @staticmethod
    def _check_axis(axis, ndim):
        if axis is not DEFAULT_AXIS:
            check_axis(axis, ndim)

    # -------------------------------------------------------------- plain numpy, notebook style
    def reference(self, z):
        """``f(z)`` as the notebook writes it."""
        return self.plain["forward"](np.asarray(z))

    def reference_jacobian(self, z):
        """Dense ``diag(f'(z))`` for 1-D ``z``."""
        return np.diag(self._df_ref(np.asarray(z)))

    def reference_vjp(self, z, g):
        """``g * f'(z)`` as the notebook writes it."""
        return np.asarray(g) * self._df_ref(np.asarray(z))

    def sample(self, shape=(6, 5), dtype=np.float64, seed=0):
        """``z`` in [-3, -0.1] U [0.1, 3] (off the ReLU kink) and a cotangent ``g``."""
        r = np.random.default_rng(seed)
        z = r.uniform(0.1, 3.0, shape) * r.choice([-1.0, 1.0], shape)
        return Sample((z.astype(dtype),), r.standard_normal(shape).astype(dtype))


# ---------------------------------------------------------------------- sigmoid
def _neg_abs_exp(z, out):
    """``out = exp(-|z|)``, numpy only: in (0, 1], never overflows.
    (``copysign(z, -1)`` would be one call, but it has no SIMD loop: 8x slower.)"""
    np.abs(z, out=out)
    np.negative(out, out=out)
    return np.exp(out, out=out)


def _sigmoid_numpy(z, out):
    e = _neg_abs_exp(z, out)
    one = scalar(z.dtype, 1.0)
    np.divide(np.where(z >= 0, one, e), np.add(e, one), out=out)


def _sigmoid_hybrid(neg_abs, finish_kernel, z, out):
    neg_abs(z, out)  # -|z| in one compiled pass (numpy needs two), then numpy's SIMD exp
    finish_kernel(z, np.exp(out, out=out))


def _sigmoid_grad_numpy(z, g, out):
    e = _neg_abs_exp(z, out)
    d = np.add(e, scalar(z.dtype, 1.0))
    d *= d
    np.divide(e, d, out=out)
    if g is not None:
        out *= g


def _sigmoid_grad_hybrid(neg_abs, finish_kernel, z, g, out):
    neg_abs(z, out)
    finish_kernel(SIGMOID, np.exp(out, out=out), g)


def _sigmoid_plain(z):
    return 1 / (1 + np.exp(-z))


def _sigmoid_d_plain(z):
    a = 1 / (1 + np.exp(-z))
    return a * (1 - a)


# Crossovers (number of elements; see the module docstring for the groups).
# The all-compiled kernel pays one scalar exp per element, the hybrid three
# cheap numpy calls: timeit of each implementation on the development
# machine put the crossover near 256 elements (float32 VJP: 384).
SIGMOID_FORWARD = Crossover("kernel", "hybrid", {8: 256, 4: 256}, "nn|sigmoid|forward|B=*|n=*")
SIGMOID_GRAD = Crossover("kernel", "hybrid", {8: 256, 4: 384}, "nn|sigmoid|vjp|B=*|n=*")

sigmoid = Elementwise(
    "sigmoid", formula="1 / (1 + exp(-z))", derivative="diag(a (1 - a))",
    forward=Route(_sigmoid_numpy, SIGMOID_FORWARD, kernel=k_sigmoid, hybrid=_sigmoid_hybrid,
                  finisher=(k_neg_abs, k_sigmoid_from_e)),
    grad=Route(_sigmoid_grad_numpy, SIGMOID_GRAD, kernel=k_smooth_grad, bind=(SIGMOID,),
               hybrid=_sigmoid_grad_hybrid, finisher=(k_neg_abs, k_smooth_grad_from)),
    df_ref=_sigmoid_d_plain,
    plain={"forward": _sigmoid_plain, "jacobian": _sigmoid_d_plain,
           "vjp": lambda z, g: g * _sigmoid_d_plain(z)})


# ---------------------------------------------------------------------- tanh
def _tanh_numpy(z, out):
    np.tanh(z, out=out)


def _tanh_grad_numpy(z, g, out):
    a = np.tanh(z, out=out)
    a *= a
    np.subtract(scalar(z.dtype, 1.0), a, out=a)
    if g is not None:
        a *= g


def _tanh_grad_hybrid(finish_kernel, z, g, out):
    finish_kernel(TANH, np.tanh(z, out), g)


def _tanh_d_plain(z):
    return 1 - np.tanh(z) ** 2


# The forward is one numpy ufunc: nothing compiled can beat it.
TANH_FORWARD = Crossover("numpy", "numpy", {}, "one ufunc")
# Numba's tanh is scalar libm, 5-20x slower per element than numpy's SIMD
# loop: the kernel wins only while call overhead dominates.
TANH_GRAD = Crossover("kernel", "hybrid", {8: 32, 4: 16}, "nn|tanh|vjp|B=*|n=*")

tanh = Elementwise(
    "tanh", formula="tanh(z)", derivative="diag(1 - a^2)",
    forward=Route(_tanh_numpy, TANH_FORWARD),
    grad=Route(_tanh_grad_numpy, TANH_GRAD, kernel=k_smooth_grad, bind=(TANH,), hybrid=_tanh_grad_hybrid,
               finisher=k_smooth_grad_from),
    df_ref=_tanh_d_plain, direct_forward=(np.tanh, None),
    plain={"forward": np.tanh, "jacobian": _tanh_d_plain, "vjp": lambda z, g: g * _tanh_d_plain(z)})


# ---------------------------------------------------------------------- relu
def _relu_numpy(z, out):
    np.maximum(z, scalar(z.dtype, 0.0), out=out)


_ZEROS = {dt: scalar(dt, 0.0) for dt in (F32, F64)}


def _relu_grad_numpy(z, g, out):
    positive = np.greater(z, scalar(z.dtype, 0.0))
    if g is None:
        out[...] = positive
    else:
        np.multiply(g, positive, out=out)


RELU_FORWARD = Crossover("numpy", "numpy", {}, "one ufunc")
# No transcendental: one compiled pass beats g * (z > 0) (two ufuncs and a
# bool temporary) at every size measured, 1 to 4M elements.
RELU_GRAD = Crossover("kernel", "kernel", {}, "nn|relu|vjp|B=*|n=*")

relu = Elementwise(
    "relu", formula="max(z, 0)", derivative="diag(z > 0)",
    forward=Route(_relu_numpy, RELU_FORWARD),
    grad=Route(_relu_grad_numpy, RELU_GRAD, kernel=k_relu_grad),
    df_ref=lambda z: (z > 0) * 1.0, direct_forward=(np.maximum, _ZEROS),
    plain={"forward": lambda z: np.maximum(z, 0), "jacobian": lambda z: (z > 0) * 1.0,
           "vjp": lambda z, g: g * (z > 0)})


# ---------------------------------------------------------------------- leaky relu
class LeakyReLU(Elementwise):
    """Leaky ReLU ``where(z > 0, z, alpha z)`` with slope ``alpha`` (default 0.01) for z <= 0.

    Examples
    --------
    >>> import numpy as np
    >>> from fastjac import nn
    >>> nn.leaky_relu.forward(np.array([-2.0, 3.0]))
    array([-0.02,  3.  ])
    >>> nn.leaky_relu.jacobian(np.array([-2.0, 3.0]))
    array([0.01, 1.  ])
    """

    def __init__(self, alpha=0.01):
        alpha = float(alpha)
        self.alpha = alpha

        slopes = {dt: scalar(dt, alpha) for dt in (F32, F64)}

        def forward_numpy(z, out):
            a = slopes[z.dtype]
            if 0.0 <= alpha <= 1.0:  # max(z, alpha z) is the op for such slopes
                np.maximum(z, np.multiply(z, a, out=out), out=out)
            else:
                out[...] = np.where(z > 0, z, z * a)

        def grad_numpy(z, g, out):
            a = slopes[z.dtype]
            out[...] = np.where(z > 0, scalar(z.dtype, 1.0), a) if g is None else np.where(z > 0, g, g * a)

        def d_plain(z):
            return np.where(z > 0, 1.0, alpha)

        super().__init__(
            "leaky_relu", formula="where(z > 0, z, alpha z)", derivative="diag(where(z > 0, 1, alpha))",
            forward=Route(forward_numpy, LEAKY_RELU, kernel=k_leaky_relu, bind=(alpha,)),
            grad=Route(grad_numpy, LEAKY_RELU, kernel=k_piecewise_grad, bind=(alpha,)),
            df_ref=d_plain,
            plain={"forward": lambda z: np.where(z > 0, z, alpha * z), "jacobian": d_plain,
                   "vjp": lambda z, g: np.where(z > 0, g, alpha * g)})

    def __repr__(self):
        return f"<fastjac.nn rule 'leaky_relu' (elementwise, alpha={self.alpha}): {self.formula}>"


LEAKY_RELU = Crossover("kernel", "kernel", {}, "nn|leaky_relu|vjp|B=*|n=*")
leaky_relu = LeakyReLU(0.01)
