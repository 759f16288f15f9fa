"""The rule table: one entry per op, analytic derivatives + references.

Every op has ``forward``, ``jacobian`` and ``vjp`` (``g`` times ``J``
without forming ``J``) and plain-numpy ``reference*`` versions written the
way the reference notebook writes them.  The table :data:`RULES` drives the
tests, the benchmarks and :func:`describe` (the docs table).

Layout (the notebook's): features on axis 0, samples on axis 1.  ``axis``
selects the feature axis; every other axis is batch.  Thresholds: next to
each rule, measured with serial ``timeit`` runs on the 2-core development
machine (numpy 2.4.6, Numba 0.68.1, shared box, so roughly), sizes
B in {1, 64, 1024} x n in {10, 64, 512, 4096}; the benchmark groups
``nn|<op>|kernel|...`` in ``benchmarks/bench_nn.py`` re-measure them.
"""
from __future__ import annotations

import numpy as np

from . import _kernels as K
from ._dispatch import ALWAYS, NEVER, Threshold, use_numba

__all__ = ["RULES", "Elementwise", "Normalizer", "Loss", "Dense", "describe"]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))
#: The notebook's clip in ``cross_entropy_loss_many``.
CLIP = 1e-10
_LOG_CLIP = float(np.log(CLIP))


# --------------------------------------------------------------------------
# validation (Python, before any kernel sees the data)
# --------------------------------------------------------------------------


def _float_array(x, name, min_ndim=1):
    """``x`` as a float32/float64 ndarray, never copied when already one."""
    if type(x) is np.ndarray and x.dtype in _FLOATS:
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except Exception as exc:  # ragged nested lists and the like
            raise TypeError(f"`{name}` must be a real floating array; got {type(x).__name__} ({exc}).") from None
        kind = arr.dtype.kind
        if kind == "f":
            arr = arr.astype(np.float32 if arr.dtype.itemsize <= 4 else np.float64)
        elif kind in "biu":
            arr = arr.astype(np.float64)
        else:
            raise TypeError(f"`{name}` must be a real floating array; got dtype {arr.dtype}.")
        if arr.dtype not in _FLOATS:  # longdouble
            arr = arr.astype(np.float64)
    if arr.ndim < min_ndim:
        raise ValueError(f"`{name}` must have at least {min_ndim} dimension(s); got shape {arr.shape}.")
    return arr


def _pair(z, g, zname="z", gname="g"):
    z = _float_array(z, zname)
    g = _float_array(g, gname)
    if g.shape != z.shape:
        raise ValueError(f"`{gname}` must have the shape of `{zname}` {z.shape}; got shape {g.shape}.")
    if g.dtype != z.dtype:
        dt = np.result_type(z.dtype, g.dtype)
        z, g = z.astype(dt, copy=False), g.astype(dt, copy=False)
    return z, g


def _axis(axis, ndim):
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, bool):
        raise TypeError(f"`axis` must be an int; got {axis!r}.")
    if not -ndim <= axis < ndim:
        raise ValueError(f"`axis` must be in [{-ndim}, {ndim - 1}] for an array of {ndim} dimension(s); got {axis}.")
    return int(axis) % ndim


def _check_out(out, shape, dtype, inputs):
    if out is None:
        return None
    if not isinstance(out, np.ndarray):
        raise TypeError(f"`out` must be a numpy array; got {type(out).__name__}.")
    if out.shape != tuple(shape) or out.dtype != dtype:
        raise ValueError(f"`out` must have shape {tuple(shape)} and dtype {dtype}; "
                         f"got shape {out.shape} and dtype {out.dtype}.")
    if not out.flags.writeable:
        raise ValueError("`out` must be writeable; got a read-only array.")
    for a in inputs:
        if np.may_share_memory(out, a):
            raise ValueError("`out` must not share memory with the inputs; got an overlapping array.")
    return out


def _to_2d(z, axis):
    """Canonical (n, B) view/copy with features on axis 0, and the batch shape."""
    if z.ndim == 1:
        return z.reshape(z.shape[0], 1), ()
    if axis == 0 and z.ndim == 2:
        return z, (z.shape[1],)
    moved = np.moveaxis(z, axis, 0)
    return moved.reshape(moved.shape[0], -1), moved.shape[1:]


def _from_2d(r2, z, axis):
    """Inverse of :func:`_to_2d` for arrays shaped like ``z``."""
    if z.ndim == 1:
        return r2.reshape(z.shape)
    if axis == 0 and z.ndim == 2:
        return r2
    moved_shape = (z.shape[axis],) + tuple(s for i, s in enumerate(z.shape) if i != axis)
    return np.moveaxis(r2.reshape(moved_shape), 0, axis)


def _finish(result, out):
    if out is None:
        return result
    if result is not out:
        out[...] = result
    return out


def _c(x):
    return x if x.flags.c_contiguous else np.ascontiguousarray(x)


# --------------------------------------------------------------------------
# base
# --------------------------------------------------------------------------


class Rule:
    """Common metadata for one entry of :data:`RULES`."""

    kind = "?"
    name: str
    formula: str
    derivative: str
    thresholds: dict

    def __repr__(self):
        return f"<fastjac.nn rule {self.name!r} ({self.kind}): {self.formula}>"


# --------------------------------------------------------------------------
# elementwise activations
# --------------------------------------------------------------------------


class Elementwise(Rule):
    """An elementwise activation ``a = f(z)``; its Jacobian is diagonal.

    Methods
    -------
    forward(z, out=None) -> ndarray, shape of z
    jacobian(z, dense=False, axis=0) -> the diagonal f'(z) (shape of z), or
        with ``dense=True`` the dense Jacobian per sample, shape
        ``batch_shape + (n, n)`` (``(n, n)`` for 1-D ``z``).
    vjp(z, g, out=None, backend=None) -> g * f'(z), shape of z
    """

    kind = "elementwise"

    def __init__(self, name, f, df_from, df_ref, kernel, vjp_threshold, formula, derivative, params=None):
        self.name = name
        self._f = f                # numpy forward, f(z, out) -> out
        self._df = df_from         # numpy derivative, df(z) -> diagonal
        self._df_ref = df_ref      # notebook-style reference derivative
        self._kernel = kernel      # compiled VJP kernel(z, g, out) on flat arrays
        self.vjp_threshold = vjp_threshold
        self.formula = formula
        self.derivative = derivative
        self.thresholds = {"vjp": vjp_threshold}

    def forward(self, z, *, out=None):
        """``f(z)`` elementwise.

        Parameters
        ----------
        z : array_like, shape (...)
        out : ndarray, shape (...), optional

        Returns
        -------
        a : ndarray, shape (...), dtype of z (float32 stays float32)
        """
        z = _float_array(z, "z", 0)
        out = _check_out(out, z.shape, z.dtype, (z,))
        return self._f(z, out)

    __call__ = forward

    def jacobian(self, z, *, dense=False, axis=0):
        """Diagonal of the Jacobian (shape of ``z``), or the dense stack.

        Parameters
        ----------
        z : array_like, shape (n,) or (n, B) or any
        dense : bool, optional
            If True return ``diag(f'(z))`` per sample, shape
            ``batch_shape + (n, n)``, features along ``axis``.
        axis : int, optional
            Feature axis for ``dense=True``.  Default 0 (notebook layout).
        """
        z = _float_array(z, "z", 1 if dense else 0)
        d = self._df(z)
        if not dense:
            return d
        axis = _axis(axis, z.ndim)
        d2, batch = _to_2d(d, axis)
        n = d2.shape[0]
        J = np.zeros(batch + (n, n), dtype=d.dtype)
        idx = np.arange(n)
        J.reshape(-1, n, n)[:, idx, idx] = d2.T
        return J

    def vjp(self, z, g, *, out=None, backend=None):
        """``g * f'(z)`` without forming the Jacobian.

        Parameters
        ----------
        z : array_like, shape (...)
        g : array_like, shape of z
        out : ndarray, shape of z, optional
        backend : {None, "auto", "numba", "numpy"}, optional

        Returns
        -------
        ndarray, shape of z
        """
        z, g = _pair(z, g)
        out = _check_out(out, z.shape, z.dtype, (z, g))
        size = z.size
        if use_numba(backend, self.vjp_threshold, size, 1, z.dtype.itemsize):
            zc, gc = _c(z), _c(g)
            res = out if (out is not None and out.flags.c_contiguous) else np.empty(z.shape, z.dtype)
            self._kernel(zc.reshape(-1), gc.reshape(-1), res.reshape(-1))
            return _finish(res, out)
        return self._vjp_numpy(z, g, out)

    def _vjp_numpy(self, z, g, out):
        if self.name == "relu":  # one ufunc on a bool mask: cheapest numpy form
            return np.multiply(g, z > 0, out=out)
        d = self._df(z)
        return np.multiply(g, d, out=d if out is None else out)

    # plain numpy, notebook style
    def reference(self, z):
        return self._f(np.asarray(z), None)

    def reference_jacobian(self, z):
        """Dense ``diag(f'(z))`` for 1-D ``z``."""
        return np.diag(self._df_ref(np.asarray(z)))

    def reference_vjp(self, z, g):
        return g * self._df_ref(np.asarray(z))


def _sigmoid_np(z, out):
    # 1 / (1 + exp(-z)), in place in one buffer; exp(-z) may overflow to inf
    # for z < -709 and 1/inf = 0 is the right limit, so silence that warning.
    r = np.negative(z, out=out)
    with np.errstate(over="ignore"):
        np.exp(r, out=r)
    r += 1
    return np.divide(1, r, out=r)


def _sigmoid_d(z):
    a = _sigmoid_np(z, None)
    d = np.subtract(1, a)
    d *= a
    return d


def _sigmoid_d_ref(z):
    with np.errstate(over="ignore"):
        a = 1 / (1 + np.exp(-z))
    return a * (1 - a)


def _tanh_np(z, out):
    return np.tanh(z, out=out)


def _tanh_d(z):
    a = np.tanh(z)
    np.multiply(a, a, out=a)
    return np.subtract(1, a, out=a)


def _relu_np(z, out):
    return np.maximum(z, 0, out=out)


def _relu_d(z):
    return (z > 0).astype(z.dtype)


def _make_leaky(alpha):
    def f(z, out):
        r = np.where(z > 0, z, z * z.dtype.type(alpha))
        return _finish(r, out)

    def d(z):
        return np.where(z > 0, z.dtype.type(1), z.dtype.type(alpha))
    return f, d


class LeakyReLU(Elementwise):
    """Leaky ReLU ``max(z, alpha z)`` with slope ``alpha`` (default 0.01) for z <= 0."""

    def __init__(self, alpha=0.01):
        f, d = _make_leaky(alpha)
        super().__init__("leaky_relu", f, d, d, None, RELU_VJP,
                         "where(z > 0, z, alpha z)", "diag(where(z > 0, 1, alpha))")
        self.alpha = float(alpha)

    def vjp(self, z, g, *, out=None, backend=None):
        z, g = _pair(z, g)
        out = _check_out(out, z.shape, z.dtype, (z, g))
        if use_numba(backend, self.vjp_threshold, z.size, 1, z.dtype.itemsize):
            zc, gc = _c(z), _c(g)
            res = out if (out is not None and out.flags.c_contiguous) else np.empty(z.shape, z.dtype)
            K.k_leaky_relu_vjp(zc.reshape(-1), gc.reshape(-1), z.dtype.type(self.alpha), res.reshape(-1))
            return _finish(res, out)
        r = np.where(z > 0, g, g * z.dtype.type(self.alpha))
        return _finish(r, out)


# Thresholds for elementwise VJPs (size = number of elements).  numpy's exp
# is SIMD-vectorised and Numba's is not, so the fused Numba kernel only wins
# on small arrays where numpy's per-call overhead of 3-4 ufuncs dominates.
# Measured: serial timeit, sigmoid VJP numba/numpy = 2.2x at 64 elements,
# 1.3x at 512, 0.54x at 4096 (float64).  tanh: numba 0.95x at 64 and
# 0.1x-0.5x above (Numba's tanh is scalar libm), so never.
SIGMOID_VJP = Threshold("size <= 512 elements", lambda n, B, s: n * B <= 512,
                        "timeit, sigmoid VJP, B=1 n=64/512/4096")
TANH_VJP = Threshold("never: numpy's vectorised tanh wins (numba 0.05x-0.95x)", NEVER.test,
                     "timeit, tanh VJP, B=1..1024, n=10..4096")
# relu/leaky: no transcendental, so the one-pass kernel wins 1.4-2.2x vs
# g * (z > 0) from ~512 elements (1.8-27x vs np.where); below that the ~1.1 us
# Numba dispatch overhead exceeds the gain (timeit of the full wrapper).
RELU_VJP = Threshold("size >= 512 elements", lambda n, B, s: n * B >= 512, "timeit, relu VJP")

sigmoid = Elementwise("sigmoid", _sigmoid_np, _sigmoid_d, _sigmoid_d_ref, K.k_sigmoid_vjp, SIGMOID_VJP,
                      "1 / (1 + exp(-z))", "diag(a (1 - a))")
tanh = Elementwise("tanh", _tanh_np, _tanh_d, lambda z: 1 - np.tanh(z) ** 2, K.k_tanh_vjp, TANH_VJP,
                   "tanh(z)", "diag(1 - a^2)")
relu = Elementwise("relu", _relu_np, _relu_d, lambda z: (z > 0) * 1.0, K.k_relu_vjp, RELU_VJP,
                   "max(z, 0)", "diag(z > 0)")
leaky_relu = LeakyReLU(0.01)


# --------------------------------------------------------------------------
# softmax and log-softmax (normalise along the feature axis)
# --------------------------------------------------------------------------


def _softmax_np2(z2, out2=None):
    """Stable softmax of (n, B) along axis 0 with one buffer (numpy path)."""
    r = np.subtract(z2, z2.max(axis=0, keepdims=True), out=out2)
    np.exp(r, out=r)
    r /= r.sum(axis=0, keepdims=True)
    return r


def _log_softmax_np2(z2, out2=None):
    mx = z2.max(axis=0, keepdims=True)
    r = np.subtract(z2, mx, out=out2)
    e = np.exp(r)
    r -= np.log(e.sum(axis=0, keepdims=True))
    return r


def _softmax_ref(z, axis=0):
    """The notebook's softmax (any axis)."""
    z = z - np.max(z, axis=axis, keepdims=True)
    e = np.exp(z)
    return e / np.sum(e, axis=axis, keepdims=True)


def _log_softmax_ref(z, axis=0):
    return np.log(_softmax_ref(z, axis))


class Normalizer(Rule):
    """Softmax-like op along ``axis`` (default 0: features on axis 0).

    Methods
    -------
    forward(z, axis=0, out=None, backend=None) -> ndarray, shape of z
    jacobian(z, axis=0, out=None, backend=None) -> ndarray, shape
        ``batch_shape + (n, n)``; ``(n, n)`` for 1-D z, ``(m, n, n)`` for a
        notebook ``(n, m)`` matrix.
    vjp(z, g, axis=0, out=None, backend=None) -> g J per sample, shape of z
    """

    kind = "normalizer"

    def __init__(self, name, fwd2, jac_kernel, vjp_kernel, ref, formula, derivative, th):
        self.name = name
        self._fwd2 = fwd2
        self._jac_kernel = jac_kernel
        self._vjp_kernel = vjp_kernel
        self._ref = ref
        self.formula = formula
        self.derivative = derivative
        self.thresholds = th

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
        z = _float_array(z, "z")
        axis = _axis(axis, z.ndim)
        out = _check_out(out, z.shape, z.dtype, (z,))
        z2, _ = _to_2d(z, axis)
        n, B = z2.shape
        if self.name == "softmax" and use_numba(backend, self.thresholds["forward"], n, B, z.dtype.itemsize):
            r2 = K.k_softmax(_c(z2), np.empty((n, B), z.dtype))
        else:
            direct = out is not None and axis == 0 and z.ndim <= 2 and out.flags.c_contiguous
            r2 = self._fwd2(z2, out.reshape(n, B) if direct else None)
        return _finish(_from_2d(r2, z, axis), out)

    __call__ = forward

    def _a2(self, z2, backend):
        n, B = z2.shape
        if use_numba(backend, SOFTMAX_FWD, n, B, z2.dtype.itemsize):
            return K.k_softmax(_c(z2), np.empty((n, B), z2.dtype))
        return _softmax_np2(z2)

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
            Accepted for symmetry with elementwise ops; always dense.

        Returns
        -------
        J : ndarray, shape ``batch_shape + (n, n)``
        """
        z = _float_array(z, "z")
        axis = _axis(axis, z.ndim)
        z2, batch = _to_2d(z, axis)
        n, B = z2.shape
        shape = batch + (n, n)
        out = _check_out(out, shape, z.dtype, (z,))
        a2 = self._a2(z2, backend)
        if use_numba(backend, self.thresholds["jacobian"], n, B, z.dtype.itemsize):
            res = out if (out is not None and out.flags.c_contiguous) else np.empty(shape, z.dtype)
            self._jac_kernel(a2, res.reshape(B, n, n))
            return _finish(res, out)
        return _finish(self._jac_np(a2).reshape(shape), out)

    def _jac_np(self, a2):
        aT = a2.T
        n = aT.shape[1]
        idx = np.arange(n)
        if self.name == "softmax":
            J = np.multiply(aT[:, :, None], -aT[:, None, :])
            J[:, idx, idx] += aT
        else:
            J = np.broadcast_to(-aT[:, None, :], (aT.shape[0], n, n)).copy()
            J[:, idx, idx] += 1
        return J

    def vjp(self, z, g, *, axis=0, out=None, backend=None):
        """``g J`` per sample without forming ``J``.

        Parameters
        ----------
        z : array_like, shape (n,) or (n, m) or any
        g : array_like, shape of z
        axis : int, optional
        out : ndarray, shape of z, optional
        backend : {None, "auto", "numba", "numpy"}, optional

        Returns
        -------
        ndarray, shape of z
        """
        z, g = _pair(z, g)
        axis = _axis(axis, z.ndim)
        out = _check_out(out, z.shape, z.dtype, (z, g))
        z2, _ = _to_2d(z, axis)
        g2, _ = _to_2d(g, axis)
        n, B = z2.shape
        a2 = self._a2(z2, backend)
        if use_numba(backend, self.thresholds["vjp"], n, B, z.dtype.itemsize):
            # a2 is a fresh C buffer we own: the kernel may write into it.
            r2 = self._vjp_kernel(a2, _c(g2), a2)
        elif self.name == "softmax":
            t = g2 * a2
            s = t.sum(axis=0, keepdims=True)
            np.subtract(g2, s, out=t)
            t *= a2
            r2 = t
        else:
            s = g2.sum(axis=0, keepdims=True)
            a2 *= s
            r2 = np.subtract(g2, a2, out=a2)
        return _finish(_from_2d(r2, z, axis), out)

    # plain numpy, notebook style
    def reference(self, z, axis=0):
        return self._ref(np.asarray(z), axis)

    def reference_jacobian(self, z):
        """Dense Jacobian of 1-D ``z`` the textbook way."""
        a = _softmax_ref(np.asarray(z))
        if self.name == "softmax":
            return np.diag(a) - np.outer(a, a)
        return np.eye(a.size) - np.outer(np.ones_like(a), a)

    def reference_vjp(self, z, g):
        return np.asarray(g) @ self.reference_jacobian(z)


# softmax forward: exp-bound; numba (scalar exp) only wins when numpy's
# 5-ufunc overhead dominates: 2.4x at B=1 n=64, 1.4-1.7x at 64x10,
# 0.9x at B=1 n=512, 0.4-0.7x above.
SOFTMAX_FWD = Threshold("n*B <= 640", lambda n, B, s: n * B <= 640,
                        "timeit, softmax forward, B in {1,64,1024} x n in {10,64,512,4096}")
# Jacobian stack diag(a) - a a^T written in one pass into np.empty output:
# numba 4-6x vs the best numpy (in-place outer product) at n <= 512, 1.1-1.5x
# when memory bound (n=4096 or B*n*n >= 2M), 0.8x at n=10 B=1024 float32.
SOFTMAX_JAC = Threshold("not (n <= 16 and B >= 512)", lambda n, B, s: not (n <= 16 and B >= 512),
                        "timeit, softmax Jacobian stack, plus bench nn|softmax|kernel")
# VJP: numpy computes softmax (SIMD exp), the kernel fuses dot + scale in
# two passes: 1.2-1.35x vs best numpy everywhere measured with B > 1; B = 1
# uses a dedicated 1-column loop.
SOFTMAX_VJP = Threshold("always", ALWAYS.test, "timeit, softmax VJP hybrid")

softmax = Normalizer("softmax", _softmax_np2, K.k_softmax_jac_stack, K.k_softmax_vjp_from_a, _softmax_ref,
                     "exp(z - max z) / sum exp(z - max z)", "diag(a) - a a^T",
                     {"forward": SOFTMAX_FWD, "jacobian": SOFTMAX_JAC, "vjp": SOFTMAX_VJP})
log_softmax = Normalizer("log_softmax", _log_softmax_np2, K.k_log_softmax_jac_stack, K.k_log_softmax_vjp_from_a,
                         _log_softmax_ref, "z - max z - log sum exp(z - max z)", "I - 1 a^T (a = softmax z)",
                         {"forward": Threshold("never: numpy (log-sum-exp is exp-bound)", NEVER.test),
                          "jacobian": SOFTMAX_JAC, "vjp": SOFTMAX_VJP})


# --------------------------------------------------------------------------
# losses: scalar value, gradient = Jacobian of a scalar
# --------------------------------------------------------------------------


def _loss_pair(y, a, yname, aname):
    a = _float_array(a, aname)
    y = _float_array(y, yname)
    if y.shape != a.shape:
        raise ValueError(f"`{yname}` must have the shape of `{aname}` {a.shape}; got shape {y.shape}.")
    if y.dtype != a.dtype:
        y = y.astype(a.dtype)
    return y, a


def _m(a):
    return a.shape[1] if a.ndim >= 2 else 1


class Loss(Rule):
    """A scalar loss ``L(y, a)`` of a target ``y`` and a prediction ``a``.

    Methods
    -------
    forward(y, a) -> float
    jacobian(y, a) -> dL/da, ndarray shape of a (the Jacobian of a scalar)
    vjp(y, a, g=1.0) -> g * dL/da
    value_and_grad(y, a) -> (float, ndarray shape of a)
    """

    kind = "loss"

    def __init__(self, name, value, grad, ref_value, formula, derivative, thresholds=None):
        self.name = name
        self._value = value
        self._grad = grad
        self._ref_value = ref_value
        self.formula = formula
        self.derivative = derivative
        self.thresholds = thresholds or {}

    def forward(self, y, a):
        """Loss value.

        Parameters
        ----------
        y : array_like, shape (n,) or (n, m)
            Target (e.g. one-hot columns).
        a : array_like, shape of y
            Prediction (probabilities, or logits for ``softmax_cross_entropy``).

        Returns
        -------
        float
        """
        y, a = _loss_pair(y, a, "y", "a")
        return self._value(y, a)

    __call__ = forward

    def jacobian(self, y, a, *, backend=None):
        """Gradient ``dL/da``, shape of ``a``, dtype of ``a``."""
        y, a = _loss_pair(y, a, "y", "a")
        return self._grad(y, a, backend)[1]

    gradient = jacobian

    def value_and_grad(self, y, a, *, backend=None):
        """``(L, dL/da)`` sharing one pass where the rule allows."""
        y, a = _loss_pair(y, a, "y", "a")
        return self._grad(y, a, backend)

    def vjp(self, y, a, g=1.0, *, backend=None):
        """``g * dL/da`` for a scalar cotangent ``g``."""
        if np.ndim(g) != 0:
            raise ValueError(f"`g` must be a scalar for a scalar loss; got shape {np.shape(g)}.")
        grad = self.jacobian(y, a, backend=backend)
        grad *= grad.dtype.type(g)
        return grad

    def reference(self, y, a):
        return self._ref_value(np.asarray(y), np.asarray(a))


def _ce_value(y, a):
    with np.errstate(divide="ignore"):
        return float(-np.sum(y * np.log(a)))


def _ce_grad(y, a, backend):
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.divide(y, a)
    np.negative(g, out=g)
    return _ce_value(y, a), g


def _cem_value(y, a):
    return float(-np.sum(y * np.log(np.maximum(a, a.dtype.type(CLIP)))) / _m(a))


def _cem_grad(y, a, backend):
    m = _m(a)
    clipped = np.maximum(a, a.dtype.type(CLIP))
    g = np.divide(y, clipped)
    g *= a.dtype.type(-1.0 / m)
    g[a <= a.dtype.type(CLIP)] = 0  # max() is flat below the clip
    return _cem_value(y, a), g


def _cem_ref(Y, A):
    m = Y.shape[1] if Y.ndim >= 2 else 1
    J = -np.sum(Y * np.log(np.maximum(A, 1e-10)), axis=0, keepdims=True)
    return float(np.sum(J) / m)


def _mse_value(y, a):
    d = a - y
    return float(np.vdot(d, d) / a.size)


def _mse_grad(y, a, backend):
    d = np.subtract(a, y)
    v = float(np.vdot(d, d) / a.size)
    d *= a.dtype.type(2.0 / a.size)
    return v, d


def _sce_value(y, z):
    return _sce_grad(y, z, "numpy")[0]


def _sce_grad(y, z, backend):
    """Fused softmax + clipped mean cross-entropy, gradient (A - Y) / m."""
    z2, _ = _to_2d(z, 0)
    y2, _ = _to_2d(y, 0)
    n, B = z2.shape
    m = _m(z)
    inv_m = z.dtype.type(1.0 / m)
    if use_numba(backend, SCE, n, B, z.dtype.itemsize):
        z2c, y2c = _c(z2), _c(y2)
        out = np.empty((n, B), z.dtype)
        if n * B <= SCE_FULLY_FUSED:
            loss = K.k_softmax_xent(z2c, y2c, inv_m, _LOG_CLIP, out)
        else:  # numpy's SIMD exp, then one fused kernel for the rest
            mx = z2c.max(axis=0)
            np.subtract(z2c, mx, out=out)
            np.exp(out, out=out)
            loss = K.k_softmax_xent_from_e(z2c, mx, out, y2c, inv_m, _LOG_CLIP, out)
        return float(loss), out.reshape(z.shape)
    A = _softmax_np2(z2)
    with np.errstate(divide="ignore"):
        la = np.log(np.maximum(A, A.dtype.type(CLIP)))
    loss = float(-np.vdot(y2, la)) / m
    A -= y2
    A *= inv_m
    return loss, A.reshape(z.shape)


def _sce_ref(Y, Z):
    return _cem_ref(Y, _softmax_ref(Z))


# softmax-CE: the fully fused kernel (exp in Numba) wins 1.4-3x up to ~1024
# elements; above, numpy's exp + one fused Numba pass for sums/log/loss/grad
# wins 1.3-2.8x for batches.  A single long column (B <= 4, n > 1024) is
# faster in numpy (fused 0.63x, hybrid 0.72x at B=1, n=4096 in bench_nn.py).
SCE_FULLY_FUSED = 1024
SCE = Threshold("except B <= 4 with n > 1024 (fully fused when n*B <= 1024, else numpy exp + fused kernel)",
                lambda n, B, s: not (B <= 4 and n > 1024),
                "bench_nn.py softmax_cross_entropy value_and_grad, B in {1,64,1024} x n in {10,...,4096}")

cross_entropy = Loss("cross_entropy", _ce_value, _ce_grad, lambda y, a: float(-np.sum(y * np.log(a))),
                     "-sum(y log a)", "-y / a")
cross_entropy_mean = Loss("cross_entropy_mean", _cem_value, _cem_grad, _cem_ref,
                          "-sum(Y log max(A, 1e-10)) / m", "-Y / (m A) where A > 1e-10, else 0")
mse = Loss("mse", _mse_value, _mse_grad, lambda y, a: float(np.mean((a - y) ** 2)),
           "mean((A - Y)^2) over all elements", "2 (A - Y) / A.size")
softmax_cross_entropy = Loss("softmax_cross_entropy", _sce_value, _sce_grad, _sce_ref,
                             "cross_entropy_mean(Y, softmax(Z))", "(softmax(Z) - Y) / m",
                             {"value_and_grad": SCE})


# --------------------------------------------------------------------------
# dense layer Z = W @ X + b (BLAS via numpy @, never inside njit)
# --------------------------------------------------------------------------


def _dense_args(W, X):
    W = _float_array(W, "W", 2)
    X = _float_array(X, "X", 1)
    if W.ndim != 2:
        raise ValueError(f"`W` must be 2-D (k, d); got shape {W.shape}.")
    if X.ndim > 2:
        raise ValueError(f"`X` must be 1-D (d,) or 2-D (d, m); got shape {X.shape}.")
    if X.shape[0] != W.shape[1]:
        raise ValueError(f"`X` must have {W.shape[1]} rows to match `W` {W.shape}; got shape {X.shape}.")
    return W, X


def dense_forward(W, X, b=None, *, out=None):
    """``Z = W @ X + b`` in the notebook layout.

    Parameters
    ----------
    W : array_like, shape (k, d)
    X : array_like, shape (d, m) or (d,)
    b : array_like, shape (k, 1) or (k,), optional
    out : ndarray, shape (k, m), optional

    Returns
    -------
    Z : ndarray, shape (k, m) (or (k,) for 1-D X)
    """
    W, X = _dense_args(W, X)
    k = W.shape[0]
    dt = np.result_type(W.dtype, X.dtype)
    shape = (k,) + X.shape[1:]
    out = _check_out(out, shape, dt, (W, X))
    Z = np.matmul(W, X, out=out) if out is not None else W @ X
    if b is not None:
        b = _float_array(b, "b")
        if b.shape not in ((k,), (k, 1)):
            raise ValueError(f"`b` must have shape ({k}, 1) or ({k},); got shape {b.shape}.")
        b = b.astype(dt, copy=False)
        Z += b.reshape((k, 1) if X.ndim == 2 else (k,))
    return Z


def dense_backward(W, X, dZ):
    """Gradients of a dense layer given ``dZ = dL/dZ``.

    Parameters
    ----------
    W : array_like, shape (k, d)
    X : array_like, shape (d, m)
    dZ : array_like, shape (k, m)

    Returns
    -------
    dW : ndarray, shape (k, d)
        ``dZ @ X.T``
    dX : ndarray, shape (d, m)
        ``W.T @ dZ``
    db : ndarray, shape (k, 1)
        ``dZ @ ones((m, 1))`` (the notebook's column); use ``db.ravel()``
        for a ``(k,)`` bias.
    """
    W, X = _dense_args(W, X)
    dZ = _float_array(dZ, "dZ")
    want = (W.shape[0],) + X.shape[1:]
    if dZ.shape != want:
        raise ValueError(f"`dZ` must have shape {want}; got shape {dZ.shape}.")
    X2 = X.reshape(X.shape[0], -1)
    dZ2 = dZ.reshape(W.shape[0], -1)
    dW = dZ2 @ X2.T
    dX = (W.T @ dZ2).reshape(X.shape)
    db = dZ2.sum(axis=1, keepdims=True)
    return dW, dX, db


class Dense(Rule):
    """Dense layer rule: ``forward(W, X, b)``, ``vjp(W, X, dZ) -> (dW, dX, db)``,
    ``jacobian(W, X)`` = dZ[:, j]/dX[:, j] = ``W`` for every sample."""

    kind = "layer"
    name = "dense"
    formula = "W @ X + b"
    derivative = "dW = dZ X^T, dX = W^T dZ, db = dZ 1"
    thresholds = {"all": Threshold("numpy @ (BLAS) always", NEVER.test)}

    forward = staticmethod(dense_forward)
    vjp = staticmethod(dense_backward)

    @staticmethod
    def jacobian(W, X=None):
        W = _float_array(W, "W", 2)
        return W.copy()

    @staticmethod
    def reference(W, X, b):
        return np.dot(W, X) + b

    @staticmethod
    def reference_vjp(W, X, dZ):
        m = dZ.shape[1]
        return np.dot(dZ, X.T), np.dot(W.T, dZ), np.dot(dZ, np.ones((m, 1)))


dense = Dense()

#: op name -> rule; drives tests, benchmarks and docs.
RULES = {r.name: r for r in (sigmoid, tanh, relu, leaky_relu, softmax, log_softmax,
                             cross_entropy, cross_entropy_mean, mse, softmax_cross_entropy, dense)}


def describe() -> str:
    """The rule table as a markdown table (embedded in ``docs/nn.md``)."""
    lines = ["| op | kind | forward | derivative | compiled kernel used when |",
             "|---|---|---|---|---|"]
    for r in RULES.values():
        th = "; ".join(f"{k}: {v.rule}" for k, v in r.thresholds.items()) or "numpy always"
        lines.append(f"| `{r.name}` | {r.kind} | `{r.formula}` | `{r.derivative}` | {th} |")
    return "\n".join(lines) + "\n"
