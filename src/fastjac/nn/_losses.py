"""Losses: a scalar ``L(y, a)`` of a target ``y`` and a prediction ``a``.

The gradient ``dL/da`` is the Jacobian of a scalar, so ``jacobian`` returns
it (shape of ``a``) and ``vjp`` scales it by a scalar cotangent.  ``axis``
is the feature (class) axis, as everywhere in :mod:`fastjac.nn`: ``m``, the
number of samples a mean runs over, is ``a.size / a.shape[axis]`` (1 for a
1-D ``a``; ``a.shape[1]`` for the notebook's ``(n, m)`` matrices).

A loss averaged over nothing (no samples, or no elements for ``mse``) is
undefined: its value is ``nan``, without a warning, and its gradient an
empty array of the shape of ``a``, on every backend.

Dispatch (benchmark groups ``nn|{op}|{method}|B={B}|n={n}`` of
``benchmarks/bench_nn.py``): a loss's plain numpy expression is two to six
ufunc calls, so on small input one compiled pass (value and gradient
together) wins; on large input numpy's SIMD ``log`` and ``exp`` do.
``softmax_cross_entropy`` has a third path above its kernel's range:
numpy's ``exp`` plus one fused kernel for the column sums, the per-column
``log``, the clipped loss and the gradient.

Fast path: float32/float64 ndarrays ``y`` and ``a`` of one shape and
dtype, nothing but defaults for the keywords and the process default
``"auto"`` go straight to the implementation (2-D ``a`` only for the
softmax cross-entropy, whose kernels want the ``(n, B)`` layout).
"""
from __future__ import annotations

import math

import numpy as np

from ._base import Rule
from ._common import (DEFAULT_AXIS, Sample, check_axis, check_out, contiguous, empty_like_c, finish, float_array,
                      from_2d, refuse_out, scalar, to_2d)
from ._dispatch import Crossover, Route, check_backend, defaults
from ._kernels.losses import (k_cross_entropy, k_cross_entropy_mean, k_mse, k_softmax_xent,
                              k_softmax_xent_from_e)
from ._normalizers import softmax_numpy, softmax_plain

__all__ = ["CLIP", "Loss", "MeanSquaredError", "SoftmaxCrossEntropy", "cross_entropy", "cross_entropy_mean",
           "mse", "softmax_cross_entropy"]

_ndarray = np.ndarray

#: The notebook's clip in ``cross_entropy_loss_many``.
CLIP = 1e-10
_LOG_CLIP = float(np.log(CLIP))


def _samples(a, axis):
    """``m``: how many samples a per-sample mean divides by (the batch size)."""
    return math.prod(a.shape[:axis] + a.shape[axis + 1:])


class Loss(Rule):
    """A scalar loss ``L(y, a)``; every method takes ``axis``, ``out`` and ``backend``.

    Parameters
    ----------
    name, formula, derivative : str
    numpy, kernel, bind, hybrid, finisher
        The implementations (see :class:`~fastjac.nn._dispatch.Route`),
        ``f(y, a, inv, out, want_value) -> float``: the gradient into ``out``
        (skipped when None), the value when asked, ``inv = 1 / count``.
    crossovers : dict
        ``{"forward": c, "jacobian": c, "value_and_grad": c}``: a value costs
        a ``log`` per element that a gradient does not, so the methods cross
        over at different sizes.
    count : {"one", "samples", "elements"}
        What the loss divides by (``m`` for a per-sample mean).
    ref_value : callable
        The notebook-style value (test oracle).
    plain : dict
        ``{method: function}``, the plain numpy expression of each method.

    Methods
    -------
    forward(y, a, *, axis=0, out=None, backend=None) -> float
    jacobian(y, a, *, axis=0, out=None, backend=None) -> dL/da, shape of a
    vjp(y, a, g=1.0, *, axis=0, out=None, backend=None) -> g * dL/da
    value_and_grad(y, a, *, axis=0, out=None, backend=None) -> (float, ndarray)

    ``out`` receives the gradient; ``forward``'s value is a Python float, so
    there ``out`` must be None.
    """

    kind = "loss"
    #: True when the implementations want the canonical ``(n, B)`` layout.
    canonical = False
    _COUNTS = {"one": lambda a, axis: 1, "samples": _samples, "elements": lambda a, axis: a.size}

    def __init__(self, name, *, numpy, crossovers, count, ref_value, formula, derivative, plain, **compiled):
        self.name = name
        self._count = self._COUNTS[count]
        self._count_kind = count
        self._ref_value = ref_value
        self.formula = formula
        self.derivative = derivative
        self.plain = plain
        self.routes = {m: Route(numpy, c, **compiled) for m, c in crossovers.items()}
        self.routes["vjp"] = self.routes["jacobian"]
        self.thresholds = dict(crossovers)
        self._fast = {m: r.fast for m, r in self.routes.items()}

    # -------------------------------------------------------------- public methods
    def forward(self, y, a, *, axis=0, out=None, backend=None):
        """Loss value.

        Parameters
        ----------
        y : array_like, shape (n,) or (n, m)
            Target (e.g. one-hot columns).
        a : array_like, shape of y
            Prediction (probabilities, or logits for ``softmax_cross_entropy``).
        axis : int, optional
            Feature axis (default 0).
        out : None
            Accepted for the common signature; the value is a Python float.
        backend : {None, "auto", "numba", "numpy"}, optional

        Returns
        -------
        float
        """
        if (type(a) is _ndarray and type(y) is _ndarray and out is None and backend is None
                and axis is DEFAULT_AXIS and defaults.auto):
            value = self._fast_run(y, a, None, True, "forward")
            if value is not None:
                return value
        refuse_out(out, "a loss value")
        return self._run(y, a, axis, None, backend, True, False, "forward")[0]

    __call__ = forward

    def value_and_grad(self, y, a, *, axis=0, out=None, backend=None):
        """``(L, dL/da)`` in one pass.

        Parameters
        ----------
        y, a : array_like, same shape
        axis : int, optional
        out : ndarray, shape of a, optional
            Receives the gradient.
        backend : {None, "auto", "numba", "numpy"}, optional

        Returns
        -------
        value : float
        grad : ndarray, shape of a, dtype of a
        """
        if (type(a) is _ndarray and type(y) is _ndarray and out is None and backend is None
                and axis is DEFAULT_AXIS and defaults.auto):
            grad = np.empty(a.shape, a.dtype)
            value = self._fast_run(y, a, grad, True, "value_and_grad")
            if value is not None:
                return value, grad
        return self._run(y, a, axis, out, backend, True, True, "value_and_grad")

    def jacobian(self, y, a, *, axis=0, out=None, backend=None):
        """Gradient ``dL/da``, shape of ``a``, dtype of ``a``.

        Parameters are those of :meth:`value_and_grad`.
        """
        if (type(a) is _ndarray and type(y) is _ndarray and out is None and backend is None
                and axis is DEFAULT_AXIS and defaults.auto):
            grad = np.empty(a.shape, a.dtype)
            if self._fast_run(y, a, grad, False, "jacobian") is not None:
                return grad
        return self._run(y, a, axis, out, backend, False, True, "jacobian")[1]

    gradient = jacobian

    def vjp(self, y, a, g=1.0, *, axis=0, out=None, backend=None):
        """``g * dL/da`` for a scalar cotangent ``g``.

        Parameters
        ----------
        y, a : array_like, same shape
        g : float, optional
            Default 1.0.
        axis, out, backend
            As for :meth:`value_and_grad`.
        """
        if np.ndim(g) != 0:
            raise ValueError(f"`g` must be a scalar for a scalar loss; got shape {np.shape(g)}.")
        grad = self.jacobian(y, a, axis=axis, out=out, backend=backend)
        grad *= grad.dtype.type(g)
        return grad

    # -------------------------------------------------------------- the two paths
    def _fast_run(self, y, a, grad, want_value, method):
        """The value, or None when the fast path does not apply (then nothing ran)."""
        dt = a.dtype
        entry = self._fast[method].get(dt)
        if (entry is None or y.dtype is not dt or y.shape != a.shape or not a.size
                or (a.ndim != 2 if self.canonical else not a.ndim)):
            return None
        kind = self._count_kind  # inline: a call to self._count would cost as much as the rest
        inv = 1.0 if kind == "one" else a.shape[0] / a.size if kind == "samples" else 1.0 / a.size
        impl = entry[1] if a.size <= entry[0] else entry[2]
        return float(impl(y, a, inv, grad, want_value)) + 0.0  # + 0.0: no -0.0

    def _run(self, y, a, axis, out, backend, want_value, want_grad, method):
        check_backend(backend)
        a = float_array(a, "a", 1)
        y = float_array(y, "y", 1)
        if y.shape != a.shape:
            raise ValueError(f"`y` must have the shape of `a` {a.shape}; got shape {y.shape}.")
        y = y.astype(a.dtype, copy=False)
        axis = check_axis(axis, a.ndim)
        out = check_out(out, a.shape, a.dtype, (y, a))
        grad = (np.empty(a.shape, a.dtype) if out is None else out) if want_grad else None
        count = self._count(a, axis)
        if count == 0 or a.size == 0:  # a mean over nothing is undefined; a sum over nothing is 0
            return (float("nan") if count == 0 else 0.0), grad
        if not self.canonical:
            impl = self.routes[method].pick(backend, a.size, 1, a.dtype)
            res = None if grad is None else empty_like_c(a.shape, a.dtype, grad)  # kernels write through ravel
            value = float(impl(y, a, 1.0 / count, res, want_value)) + 0.0
            return value, None if grad is None else finish(res, grad)
        y2, _ = to_2d(y, axis)
        a2, _ = to_2d(a, axis)
        n, B = a2.shape
        if grad is None:
            g2, direct = None, True
        elif grad.flags.c_contiguous and (a.ndim == 1 or (axis == 0 and a.ndim == 2)):
            g2, direct = grad.reshape(n, B), True
        else:
            g2, direct = np.empty((n, B), a.dtype), False
        impl = self.routes[method].pick(backend, n, B, a.dtype)
        value = float(impl(contiguous(y2), contiguous(a2), 1.0 / count, g2, want_value)) + 0.0
        if not direct:
            grad[...] = from_2d(g2, a, axis)
        return value, grad

    def reference(self, y, a):
        """The loss as the notebook writes it."""
        return self._ref_value(np.asarray(y), np.asarray(a))

    def sample(self, shape=(6, 5), dtype=np.float64, seed=0):
        """One-hot columns ``y`` and probabilities in [0.2, 1], cotangent 2.5."""
        r = np.random.default_rng(seed)
        return Sample(_one_hot(r, shape, dtype) + (r.uniform(0.2, 1.0, shape).astype(dtype),), 2.5)


def _one_hot(r, shape, dtype):
    y = np.zeros(shape, dtype)
    if len(shape) == 1:
        y[r.integers(0, shape[0])] = 1
    elif shape[0]:
        y[r.integers(0, shape[0], shape[1]), np.arange(shape[1])] = 1
    return (y,)


# ---------------------------------------------------------------------- cross-entropy, plain and clipped
def _m(Y):
    """The notebook's ``m``: the number of columns (1 for a 1-D array)."""
    return Y.shape[1] if Y.ndim >= 2 else 1


def _ce_numpy(y, a, inv, out, want_value):
    with np.errstate(divide="ignore", invalid="ignore"):  # log(0) = -inf and y / 0 are the answers
        if out is not None:
            np.divide(y, a, out=out)
            np.negative(out, out=out)
        return float(-np.vdot(y, np.log(a))) if want_value else 0.0


def _cem_numpy(y, a, inv, out, want_value):
    clip = scalar(a.dtype, CLIP)
    if out is not None:
        np.divide(y, np.maximum(a, clip), out=out)
        out *= a.dtype.type(-inv)
        out[a <= clip] = 0  # max() is flat below the clip
    return float(-np.vdot(y, np.log(np.maximum(a, clip)))) * inv if want_value else 0.0


def _cem_ref(Y, A):
    m = _m(Y)
    J = -np.sum(Y * np.log(np.maximum(A, 1e-10)), axis=0, keepdims=True)
    return float(np.sum(J) / m)


# A value costs one scalar log per element in the kernel against numpy's SIMD
# log: the kernel wins up to about 512 elements, where numpy's calls (and
# errstate's 2 us) dominate.  A gradient has no log: the kernel wins at every size.
_WITH_LOG = Crossover("kernel", "numpy", {8: 512, 4: 512}, "nn|cross_entropy|value_and_grad|B=*|n=*")
_NO_LOG = Crossover("kernel", "kernel", {}, "nn|cross_entropy|jacobian|B=*|n=*")
CROSS_ENTROPY = {"forward": _WITH_LOG, "jacobian": _NO_LOG, "value_and_grad": _WITH_LOG}

cross_entropy = Loss(
    "cross_entropy", numpy=_ce_numpy, kernel=k_cross_entropy, crossovers=CROSS_ENTROPY, count="one",
    ref_value=lambda y, a: float(-np.sum(y * np.log(a))), formula="-sum(y log a)", derivative="-y / a",
    plain={"forward": lambda y, a: -np.sum(y * np.log(a)), "jacobian": lambda y, a: -y / a,
           "value_and_grad": lambda y, a: (-np.sum(y * np.log(a)), -y / a)})
cross_entropy_mean = Loss(
    "cross_entropy_mean", count="samples", ref_value=_cem_ref,
    numpy=_cem_numpy, kernel=k_cross_entropy_mean, bind=(CLIP,), crossovers=CROSS_ENTROPY,
    formula="-sum(Y log max(A, 1e-10)) / m", derivative="-Y / (m A) where A > 1e-10, else 0",
    plain={"forward": _cem_ref,
           "jacobian": lambda Y, A: -Y / (_m(Y) * np.maximum(A, 1e-10)) * (A > 1e-10),
           "value_and_grad": lambda Y, A: (_cem_ref(Y, A), -Y / (_m(Y) * np.maximum(A, 1e-10)) * (A > 1e-10))})


# ---------------------------------------------------------------------- mean squared error
def _mse_numpy(y, a, inv, out, want_value):
    d = np.subtract(a, y, out=out)
    value = float(np.vdot(d, d)) * inv if want_value else 0.0
    if out is not None:
        out *= a.dtype.type(2.0 * inv)
    return value


class MeanSquaredError(Loss):
    """``mean((a - y)^2)`` over all elements; ``axis`` has no effect on it."""

    def sample(self, shape=(6, 5), dtype=np.float64, seed=0):
        """Two normal arrays, cotangent 2.5."""
        r = np.random.default_rng(seed)
        return Sample((r.standard_normal(shape).astype(dtype), r.standard_normal(shape).astype(dtype)), 2.5)


# No transcendental: one compiled pass (difference, scaled gradient) beats
# numpy's two or three calls at every size.  The value's float64 sum of
# squares runs at about one element per cycle; numpy's subtract and BLAS dot
# overtake it above about 4096 elements.
_MSE_VALUE = Crossover("kernel", "numpy", {8: 4096, 4: 4096}, "nn|mse|value_and_grad|B=*|n=*")
_MSE_GRAD = Crossover("kernel", "kernel", {}, "nn|mse|jacobian|B=*|n=*")

mse = MeanSquaredError(
    "mse", numpy=_mse_numpy, kernel=k_mse, count="elements",
    crossovers={"forward": _MSE_VALUE, "jacobian": _MSE_GRAD, "value_and_grad": _MSE_VALUE},
    ref_value=lambda y, a: float(np.mean((a - y) ** 2)), formula="mean((A - Y)^2) over all elements",
    derivative="2 (A - Y) / A.size",
    plain={"forward": lambda y, a: np.mean((a - y) ** 2), "jacobian": lambda y, a: 2 * (a - y) / a.size,
           "value_and_grad": lambda y, a: (np.mean((a - y) ** 2), 2 * (a - y) / a.size)})


# ---------------------------------------------------------------------- softmax + cross-entropy, fused
def _sce_numpy(y2, z2, inv, out, want_value):
    A = softmax_numpy(z2, np.empty(z2.shape, z2.dtype) if out is None else out)
    loss = -float(np.vdot(y2, np.log(np.maximum(A, scalar(A.dtype, CLIP))))) * inv if want_value else 0.0
    if out is not None:
        A -= y2
        A *= A.dtype.type(inv)
    return loss


def _sce_hybrid(finish_kernel, y2, z2, inv, out, want_value):
    buf = np.empty(z2.shape, z2.dtype) if out is None else out
    mx = z2.max(axis=0)
    np.subtract(z2, mx, out=buf)
    np.exp(buf, out=buf)
    return finish_kernel(_LOG_CLIP, z2, mx, buf, y2, inv)


def _sce_ref(Y, Z):
    return _cem_ref(Y, softmax_plain(Z))


def _sce_plain(Y, Z):
    m = _m(Y)
    A = softmax_plain(Z)
    return -np.sum(Y * np.log(np.maximum(A, 1e-10))) / m, (A - Y) / m


# The fully fused kernel (exp in Numba) wins while numpy's call overhead
# dominates, up to about 256 elements; above, numpy's exp + one fused kernel
# for sums, log, loss and gradient.
SCE = Crossover("kernel", "hybrid", {8: 256, 4: 256}, "nn|softmax_cross_entropy|value_and_grad|B=*|n=*")


class SoftmaxCrossEntropy(Loss):
    """``cross_entropy_mean(Y, softmax(Z))`` of logits ``Z``, fused; ``axis`` is the softmax axis.

    Examples
    --------
    Two samples of two classes, logits all 0: each softmax is (1/2, 1/2), so
    the loss is log 2 and the gradient ``(A - Y) / 2``.

    >>> import numpy as np
    >>> from fastjac import nn
    >>> L, dZ = nn.softmax_cross_entropy.value_and_grad(np.eye(2), np.zeros((2, 2)))
    >>> round(L, 6), dZ
    (0.693147, array([[-0.25,  0.25],
           [ 0.25, -0.25]]))
    """

    canonical = True

    def __init__(self):
        super().__init__(
            "softmax_cross_entropy", count="samples", ref_value=_sce_ref,
            numpy=_sce_numpy, kernel=k_softmax_xent, bind=(_LOG_CLIP,), hybrid=_sce_hybrid,
            finisher=k_softmax_xent_from_e, crossovers={"forward": SCE, "jacobian": SCE, "value_and_grad": SCE},
            formula="cross_entropy_mean(Y, softmax(Z))", derivative="(softmax(Z) - Y) / m",
            plain={"forward": lambda Y, Z: _sce_plain(Y, Z)[0], "jacobian": lambda Y, Z: _sce_plain(Y, Z)[1],
                   "value_and_grad": _sce_plain})

    def sample(self, shape=(6, 5), dtype=np.float64, seed=0):
        """One-hot columns ``y`` and logits ``z ~ 2 N(0, 1)``, cotangent 2.5."""
        r = np.random.default_rng(seed)
        return Sample(_one_hot(r, shape, dtype) + ((2 * r.standard_normal(shape)).astype(dtype),), 2.5)


softmax_cross_entropy = SoftmaxCrossEntropy()
