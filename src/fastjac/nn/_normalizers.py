"""Softmax and log-softmax: normalise along the feature axis.

Each is its own rule object (:class:`Softmax`, :class:`LogSoftmax`) on a
shared base (:class:`Normalizer`) that owns the layout: ``axis`` is the
feature axis (default 0, the notebook's columns), every other axis is
batch, and the implementations see the canonical C-contiguous ``(n, B)``
array.

Dispatch (benchmark groups ``nn|softmax|{method}|B={B}|n={n}`` and
``nn|log_softmax|{method}|B={B}|n={n}`` of ``benchmarks/bench_nn.py``, and
the same with ``{method}.float32``): on small inputs the all-compiled
kernel wins (numpy pays ~0.4 us per ufunc call, five or more of them); on
larger ones the *hybrid* lets numpy compute ``exp(z - max z)`` with its SIMD
``exp`` and one compiled kernel fuses the column sums with the rest.  The
Jacobian stack ``diag(a) - a a^T`` is pure memory traffic, written in one
pass by a kernel.
"""
from __future__ import annotations

import numpy as np

from ._base import Rule
from ._common import (DEFAULT_AXIS, Sample, check_axis, check_out, contiguous, empty_like_c, finish, float_array,
                      from_2d, pair, to_2d)
from ._dispatch import Crossover, Route, defaults
from ._kernels.normalizers import (k_log_softmax, k_log_softmax_from_e, k_log_softmax_jac_stack, k_log_softmax_vjp,
                                   k_log_softmax_vjp_from_e, k_softmax, k_softmax_from_e, k_softmax_jac_stack,
                                   k_softmax_vjp, k_softmax_vjp_from_e)

__all__ = ["LogSoftmax", "Normalizer", "Softmax", "log_softmax", "softmax", "softmax_numpy", "softmax_plain"]

_ndarray = np.ndarray


# ---------------------------------------------------------------------- numpy building blocks, (n, B)
def _shift_exp_numpy(z2, out):
    """``out = exp(z - max z)`` per column (numpy's SIMD exp)."""
    np.subtract(z2, z2.max(axis=0, keepdims=True), out=out)
    return np.exp(out, out=out)


def softmax_numpy(z2, out):
    """Stable softmax of ``z2`` (n, B) along axis 0 into ``out``, numpy only."""
    e = _shift_exp_numpy(z2, out)
    e /= e.sum(axis=0, keepdims=True)
    return e


def _softmax_hybrid(finish_kernel, z2, out):
    finish_kernel(_shift_exp_numpy(z2, out))


def softmax_plain(z, axis=0):
    """The notebook's softmax (any axis): the plain expression and the test oracle."""
    z = z - np.max(z, axis=axis, keepdims=True)
    e = np.exp(z)
    return e / np.sum(e, axis=axis, keepdims=True)


# ---------------------------------------------------------------------- shared machinery
class Normalizer(Rule):
    """A softmax-like op along ``axis``; subclasses bring the routes and references.

    Methods
    -------
    forward(z, *, axis=0, out=None, backend=None) -> ndarray, shape of z
    jacobian(z, *, axis=0, out=None, backend=None, dense=True) -> ndarray, shape
        ``batch_shape + (n, n)``: ``(n, n)`` for 1-D z, ``(m, n, n)`` for a
        notebook ``(n, m)`` matrix.
    vjp(z, g, *, axis=0, out=None, backend=None) -> g J per sample, shape of z

    Zero-size input (no features or no samples) gives an empty result of
    the right shape on every backend.

    Fast path (``forward`` and ``vjp``): C-contiguous 1-D or 2-D float32/
    float64 ndarrays, nothing but defaults for the keywords and the process
    default ``"auto"`` go straight to the implementation picked for the size.
    """

    kind = "normalizer"

    def __init__(self, *, forward, jacobian, vjp):
        self.routes = {"forward": forward, "jacobian": jacobian, "vjp": vjp}
        self.thresholds = {k: r.crossover for k, r in self.routes.items()}
        self._fast = {k: r.fast for k, r in self.routes.items()}

    def forward(self, z, *, axis=0, out=None, backend=None):
        """Normalise along ``axis``.

        Parameters
        ----------
        z : array_like, shape (n,) or (n, m) or any
        axis : int, optional
            Feature axis (default 0: each column of an (n, m) matrix).
        out : ndarray, shape of z, optional
        backend : {None, "auto", "numba", "numpy"}, optional

        Returns
        -------
        ndarray, shape of z, dtype of z
        """
        if type(z) is _ndarray and out is None and backend is None and axis is DEFAULT_AXIS and defaults.auto:
            res = self._fast_apply("forward", z, None)
            if res is not None:
                return res
        z = float_array(z, "z", 1)
        return self._apply("forward", (z,), axis, out, backend)

    __call__ = forward

    def jacobian(self, z, *, axis=0, out=None, backend=None, dense=True):
        """Dense Jacobian per sample.

        Parameters
        ----------
        z : array_like, shape (n,) or (n, m) or any
        axis : int, optional
            Feature axis; every other axis is batch.  Default 0.
        out : ndarray, shape ``batch_shape + (n, n)``, optional
        backend : {None, "auto", "numba", "numpy"}, optional
        dense : bool, optional
            Accepted for the elementwise ops' signature.  The Jacobian of a
            normaliser is never diagonal, so it is returned dense either way.

        Returns
        -------
        J : ndarray, shape ``batch_shape + (n, n)``
        """
        z = float_array(z, "z", 1)
        axis = check_axis(axis, z.ndim)
        z2, batch = to_2d(z, axis)
        n, B = z2.shape
        shape = batch + (n, n)
        out = check_out(out, shape, z.dtype, (z,))
        res = empty_like_c(shape, z.dtype, out)
        if z2.size:
            a2 = np.empty((n, B), z.dtype)
            SOFTMAX_ROUTE.pick(backend, n, B, z.dtype)(contiguous(z2), a2)
            self.routes["jacobian"].pick(backend, n, B, z.dtype)(a2, res.reshape(B, n, n))
        return finish(res, out)

    def vjp(self, z, g, *, axis=0, out=None, backend=None):
        """``g J`` per sample without forming ``J``.

        Parameters
        ----------
        z : array_like, shape (n,) or (n, m) or any
        g : array_like, shape of z
        axis : int, optional
            Feature axis.  Default 0.
        out : ndarray, shape of z, optional
        backend : {None, "auto", "numba", "numpy"}, optional

        Returns
        -------
        gJ : ndarray, shape of z
            ``g J`` for each sample, ``J`` the sample's Jacobian.
        """
        if (type(z) is _ndarray and type(g) is _ndarray and out is None and backend is None
                and axis is DEFAULT_AXIS and defaults.auto):
            res = self._fast_apply("vjp", z, g)
            if res is not None:
                return res
        return self._apply("vjp", pair(z, g, min_ndim=1), axis, out, backend)

    def _fast_apply(self, method, z, g):
        """The result, or None when the fast path does not apply (then nothing ran)."""
        dt = z.dtype
        entry = self._fast[method].get(dt)
        if entry is None or not z.size or z.ndim > 2 or not z.flags.c_contiguous:
            return None
        if g is not None and (g.dtype is not dt or g.shape != z.shape or not g.flags.c_contiguous):
            return None
        res = np.empty(z.shape, dt)
        views = (z, res) if g is None else (z, g, res)
        if z.ndim == 1:  # one column
            views = tuple(v.reshape(z.size, 1) for v in views)
        (entry[1] if z.size <= entry[0] else entry[2])(*views)
        return res

    def _apply(self, method, arrays, axis, out, backend):
        """Run ``method``'s implementation on the canonical ``(n, B)`` views of
        ``arrays`` (validated, all shaped like the first) into a result shaped like it."""
        z = arrays[0]
        axis = check_axis(axis, z.ndim)
        out = check_out(out, z.shape, z.dtype, arrays)
        views = [contiguous(to_2d(a, axis)[0]) for a in arrays]
        n, B = views[0].shape
        direct = out is not None and (z.ndim == 1 or (axis == 0 and z.ndim == 2)) and out.flags.c_contiguous
        r2 = out.reshape(n, B) if direct else np.empty((n, B), z.dtype)
        if z.size:
            self.routes[method].pick(backend, n, B, z.dtype)(*views, r2)
        return finish(from_2d(r2, z, axis), out)

    def reference_vjp(self, z, g):
        """``g @ J`` for 1-D ``z`` the textbook way."""
        return np.asarray(g) @ self.reference_jacobian(z)

    def sample(self, shape=(6, 5), dtype=np.float64, seed=0):
        """Logits ``z ~ 2 N(0, 1)`` and a cotangent ``g ~ N(0, 1)``."""
        r = np.random.default_rng(seed)
        return Sample(((2 * r.standard_normal(shape)).astype(dtype),), r.standard_normal(shape).astype(dtype))


# ---------------------------------------------------------------------- crossovers
# Measured by timing each implementation beside the plain expression (the
# benchmark groups named in the module docstring re-measure the dispatched
# call): the all-compiled kernels win up to about 256 elements, where
# numpy's five-plus ufunc calls dominate; above, numpy's exp plus one fused
# kernel wins (0.35-0.7x the plain expression).
SOFTMAX_FORWARD = Crossover("kernel", "hybrid", {8: 256, 4: 256}, "nn|softmax|forward|B=*|n=*")
LOG_SOFTMAX_FORWARD = Crossover("kernel", "hybrid", {8: 256, 4: 256}, "nn|log_softmax|forward|B=*|n=*")
NORMALIZER_VJP = Crossover("kernel", "hybrid", {8: 256, 4: 256}, "nn|softmax|vjp|B=*|n=*, nn|log_softmax|vjp|B=*|n=*")
# The stack diag(a) - a a^T written in one pass into an np.empty output:
# 0.05-0.12x the plain expression, 0.1-0.3x the best numpy (in-place outer
# product) at every shape measured, n = 10 to 4096, B = 1 to 1024.
JACOBIAN_STACK = Crossover("kernel", "kernel", {}, "nn|softmax|jacobian|B=*|n=*")


# ---------------------------------------------------------------------- softmax
def _softmax_jacobian_numpy(a2, out3):
    aT = a2.T
    idx = np.arange(aT.shape[1])
    np.multiply(aT[:, :, None], -aT[:, None, :], out=out3)
    out3[:, idx, idx] += aT


def _softmax_vjp_numpy(z2, g2, out):
    a = softmax_numpy(z2, out)
    t = g2 * a
    s = t.sum(axis=0, keepdims=True)
    np.subtract(g2, s, out=t)
    a *= t


def _softmax_vjp_hybrid(finish_kernel, z2, g2, out):
    finish_kernel(_shift_exp_numpy(z2, out), g2)


def _softmax_jacobian_plain(Z):
    A = softmax_plain(Z)
    if A.ndim == 1:
        return np.diag(A) - np.outer(A, A)
    AT = A.T
    return AT[:, :, None] * np.eye(A.shape[0]) - AT[:, :, None] * AT[:, None, :]


def _softmax_vjp_plain(Z, G):
    A = softmax_plain(Z)
    return A * (G - np.sum(G * A, axis=0, keepdims=True))


SOFTMAX_ROUTE = Route(softmax_numpy, SOFTMAX_FORWARD, kernel=k_softmax, hybrid=_softmax_hybrid,
                      finisher=k_softmax_from_e)


class Softmax(Normalizer):
    """``softmax(z) = exp(z - max z) / sum exp(z - max z)`` along ``axis``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastjac import nn
    >>> nn.softmax.forward(np.log([1.0, 3.0]))
    array([0.25, 0.75])
    >>> nn.softmax.vjp(np.zeros(2), np.array([1.0, 0.0]))  # g (diag(a) - a a^T), a = (1/2, 1/2)
    array([ 0.25, -0.25])
    """

    name = "softmax"
    formula = "exp(z - max z) / sum exp(z - max z)"
    derivative = "diag(a) - a a^T"
    plain = {"forward": softmax_plain, "jacobian": _softmax_jacobian_plain, "vjp": _softmax_vjp_plain}

    def __init__(self):
        super().__init__(
            forward=SOFTMAX_ROUTE,
            jacobian=Route(_softmax_jacobian_numpy, JACOBIAN_STACK, kernel=k_softmax_jac_stack),
            vjp=Route(_softmax_vjp_numpy, NORMALIZER_VJP, kernel=k_softmax_vjp, hybrid=_softmax_vjp_hybrid,
                      finisher=k_softmax_vjp_from_e))

    def reference(self, z, axis=0):
        """The notebook's softmax along ``axis``."""
        return softmax_plain(np.asarray(z), axis)

    def reference_jacobian(self, z):
        """``diag(a) - a a^T`` for 1-D ``z``."""
        a = softmax_plain(np.asarray(z))
        return np.diag(a) - np.outer(a, a)


# ---------------------------------------------------------------------- log-softmax
def _log_softmax_numpy(z2, out):
    r = np.subtract(z2, z2.max(axis=0, keepdims=True), out=out)
    r -= np.log(np.exp(r).sum(axis=0, keepdims=True))


def _log_softmax_hybrid(finish_kernel, z2, out):
    r = np.subtract(z2, z2.max(axis=0, keepdims=True), out=out)
    finish_kernel(r, np.exp(r))


def _log_softmax_jacobian_numpy(a2, out3):
    aT = a2.T
    idx = np.arange(aT.shape[1])
    np.negative(np.broadcast_to(aT[:, None, :], out3.shape), out=out3)
    out3[:, idx, idx] += 1


def _log_softmax_vjp_numpy(z2, g2, out):
    a = softmax_numpy(z2, out)
    a *= g2.sum(axis=0, keepdims=True)
    np.subtract(g2, a, out=a)


def _log_softmax_vjp_hybrid(finish_kernel, z2, g2, out):
    finish_kernel(_shift_exp_numpy(z2, out), g2)


def _log_softmax_plain(Z):
    Z = Z - np.max(Z, axis=0, keepdims=True)
    return Z - np.log(np.sum(np.exp(Z), axis=0, keepdims=True))


def _log_softmax_jacobian_plain(Z):
    A = softmax_plain(Z)
    if A.ndim == 1:
        return np.eye(A.size) - A[None, :]
    return np.eye(A.shape[0]) - A.T[:, None, :]


def _log_softmax_vjp_plain(Z, G):
    return G - softmax_plain(Z) * np.sum(G, axis=0, keepdims=True)


class LogSoftmax(Normalizer):
    """``log_softmax(z) = z - max z - log sum exp(z - max z)`` along ``axis``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastjac import nn
    >>> nn.log_softmax.forward(np.array([0.0, 0.0])).round(4)
    array([-0.6931, -0.6931])
    >>> nn.log_softmax.jacobian(np.array([0.0, 0.0]))
    array([[ 0.5, -0.5],
           [-0.5,  0.5]])
    """

    name = "log_softmax"
    formula = "z - max z - log sum exp(z - max z)"
    derivative = "I - 1 a^T (a = softmax z)"
    plain = {"forward": _log_softmax_plain, "jacobian": _log_softmax_jacobian_plain,
             "vjp": _log_softmax_vjp_plain}

    def __init__(self):
        super().__init__(
            forward=Route(_log_softmax_numpy, LOG_SOFTMAX_FORWARD, kernel=k_log_softmax, hybrid=_log_softmax_hybrid,
                          finisher=k_log_softmax_from_e),
            jacobian=Route(_log_softmax_jacobian_numpy, JACOBIAN_STACK, kernel=k_log_softmax_jac_stack),
            vjp=Route(_log_softmax_vjp_numpy, NORMALIZER_VJP, kernel=k_log_softmax_vjp,
                      hybrid=_log_softmax_vjp_hybrid, finisher=k_log_softmax_vjp_from_e))

    def reference(self, z, axis=0):
        """``log(softmax(z))`` as the notebook would write it."""
        return np.log(softmax_plain(np.asarray(z), axis))

    def reference_jacobian(self, z):
        """``I - 1 a^T`` for 1-D ``z``."""
        a = softmax_plain(np.asarray(z))
        return np.eye(a.size) - np.outer(np.ones_like(a), a)


softmax = Softmax()
log_softmax = LogSoftmax()
