"""The dense layer ``Z = W @ X + b``: matrix products stay with numpy ``@`` (BLAS).

Layout: ``axis`` is the feature axis of ``X`` (and of ``Z`` and ``dZ``).
The default 0 is the notebook's ``X`` of shape ``(d, m)``, one sample per
column; ``axis=1`` (or -1) takes row-major batches ``X`` of shape
``(m, d)`` and gives ``Z = X @ W.T + b`` of shape ``(m, k)``.  ``backend``
is accepted and checked, and changes nothing: BLAS always wins.

Fast path: 2-D float32/float64 ndarrays of one dtype in the notebook
layout, nothing but defaults for the keywords, go straight to ``@`` (the
validating path costs several microseconds, as much as a small product).
The bias is added in place and ``db`` summed with ``np.add.reduce``, which
is what makes the rule cheaper than ``W @ X + b`` and ``dZ.sum(axis=1)``
on small layers.
"""
from __future__ import annotations

import numpy as np

from ._base import Rule
from ._common import DEFAULT_AXIS, F32, F64, Sample, check_axis, check_out, float_array
from ._dispatch import NEVER, Threshold, check_backend

__all__ = ["Dense", "dense", "dense_backward", "dense_forward"]

_ndarray = np.ndarray


def _fast_layer(W, X, axis, out, backend):
    """Whether ``W`` and ``X`` are 2-D float arrays of one dtype with default keywords.

    Their shapes are left to ``@``: a mismatch raises there, and the caller
    then takes the validating path, which names the parameter.
    """
    return (type(W) is _ndarray and type(X) is _ndarray and out is None and backend is None and axis is DEFAULT_AXIS
            and W.dtype is X.dtype and (W.dtype is F64 or W.dtype is F32) and W.ndim == 2 and X.ndim == 2)


def _layer_args(W, X, axis, backend):
    """Validated ``W`` (k, d), ``X`` and whether samples are rows (``axis`` 1 of a 2-D ``X``)."""
    check_backend(backend)
    W = float_array(W, "W", 2)
    X = float_array(X, "X", 1)
    if W.ndim != 2:
        raise ValueError(f"`W` must be 2-D (k, d); got shape {W.shape}.")
    if X.ndim > 2:
        raise ValueError(f"`X` must be 1-D (d,) or 2-D (d, m); got shape {X.shape}.")
    rows = check_axis(axis, X.ndim) == 1
    d = X.shape[1] if rows else X.shape[0]
    if d != W.shape[1]:
        where = "columns" if rows else "rows"
        raise ValueError(f"`X` must have {W.shape[1]} {where} to match `W` {W.shape}; got shape {X.shape}.")
    return W, X, rows


def dense_forward(W, X, b=None, *, axis=0, out=None, backend=None):
    """``Z = W @ X + b`` in the notebook layout (``X.T @ W.T + b`` with ``axis=1``).

    Parameters
    ----------
    W : array_like, shape (k, d)
    X : array_like, shape (d, m) or (d,); (m, d) with ``axis=1``
    b : array_like, shape (k, 1) or (k,), optional; (k,) or (1, k) with ``axis=1``
    axis : int, optional
        The feature axis of ``X``: 0 (default, one sample per column) or 1.
    out : ndarray, shape of Z, optional
    backend : {None, "auto", "numba", "numpy"}, optional
        Checked; numpy ``@`` (BLAS) runs whatever it is.

    Returns
    -------
    Z : ndarray, shape (k, m) (or (k,) for 1-D X; (m, k) with ``axis=1``)

    Examples
    --------
    >>> import numpy as np
    >>> from fastjac import nn
    >>> nn.dense_forward(np.eye(2), np.array([[1.0], [2.0]]), np.array([0.5, -0.5]))
    array([[1.5],
           [1.5]])
    """
    if _fast_layer(W, X, axis, out, backend) and (b is None or (type(b) is _ndarray and b.dtype is W.dtype
                                                               and b.shape == (W.shape[0], 1))):
        try:
            Z = W @ X
        except ValueError:
            pass  # the validating path below says which shape is wrong
        else:
            if b is not None:
                Z += b
            return Z
    W, X, rows = _layer_args(W, X, axis, backend)
    k = W.shape[0]
    dt = np.result_type(W.dtype, X.dtype)
    shape = (X.shape[0], k) if rows else (k,) + X.shape[1:]
    out = check_out(out, shape, dt, (W, X))
    Z = np.matmul(X, W.T, out=out) if rows else np.matmul(W, X, out=out)
    if b is not None:
        b = float_array(b, "b")
        allowed = ((k,), (1, k)) if rows else ((k,), (k, 1))
        if b.shape not in allowed:
            raise ValueError(f"`b` must have shape {allowed[1]} or {allowed[0]}; got shape {b.shape}.")
        b = b.astype(dt, copy=False)
        Z += b.reshape((1, k) if rows else (k, 1) if X.ndim == 2 else (k,))
    return Z


def dense_backward(W, X, dZ, *, axis=0, out=None, backend=None):
    """Gradients of a dense layer given ``dZ = dL/dZ``.

    Parameters
    ----------
    W : array_like, shape (k, d)
    X : array_like, shape (d, m) or (d,); (m, d) with ``axis=1``
    dZ : array_like, shape of Z: (k, m) or (k,); (m, k) with ``axis=1``
    axis : int, optional
        The feature axis of ``X`` and ``dZ``: 0 (default) or 1.
    out : tuple of 3 ndarrays, optional
        Receive ``dW``, ``dX`` and ``db``.
    backend : {None, "auto", "numba", "numpy"}, optional
        Checked; numpy ``@`` (BLAS) runs whatever it is.

    Returns
    -------
    dW : ndarray, shape (k, d)
        ``dZ @ X.T``
    dX : ndarray, shape of X
        ``W.T @ dZ``
    db : ndarray, shape (k, 1)
        ``dZ @ ones((m, 1))`` (the notebook's column); use ``db.ravel()``
        for a ``(k,)`` bias.
    """
    if (_fast_layer(W, X, axis, out, backend) and type(dZ) is _ndarray and dZ.dtype is W.dtype and dZ.ndim == 2
            and X.shape[0] == W.shape[1]):
        try:  # with d matching: (k, m) @ (m, d) and (d, k) @ (k, m) check k and m
            return dZ @ X.T, W.T @ dZ, np.add.reduce(dZ, axis=1, keepdims=True)
        except ValueError:
            pass
    W, X, rows = _layer_args(W, X, axis, backend)
    dZ = float_array(dZ, "dZ")
    k = W.shape[0]
    want = (X.shape[0], k) if rows else (k,) + X.shape[1:]
    if dZ.shape != want:
        raise ValueError(f"`dZ` must have shape {want}; got shape {dZ.shape}.")
    # the notebook layout: features on axis 0, samples on axis 1
    X2 = X.T if rows else X if X.ndim == 2 else X.reshape(-1, 1)
    dZ2 = dZ.T if rows else dZ if dZ.ndim == 2 else dZ.reshape(-1, 1)
    dt = np.result_type(W.dtype, X.dtype, dZ.dtype)
    if out is None:
        dX2 = W.T @ dZ2
        return dZ2 @ X2.T, (dX2.T if rows else dX2.reshape(X.shape)), np.add.reduce(dZ2, axis=1, keepdims=True)
    if not isinstance(out, tuple) or len(out) != 3:
        raise TypeError(f"`out` must be a tuple (dW, dX, db) of 3 arrays; got {type(out).__name__}.")
    dW = check_out(out[0], W.shape, dt, (W, X, dZ), "out[0]")
    dX = check_out(out[1], X.shape, dt, (W, X, dZ), "out[1]")
    db = check_out(out[2], (k, 1), dt, (W, X, dZ), "out[2]")
    np.matmul(dZ2, X2.T, out=dW)
    dX[...] = (W.T @ dZ2).T if rows else (W.T @ dZ2).reshape(X.shape)
    np.add.reduce(dZ2, axis=1, keepdims=True, out=db)
    return dW, dX, db


class Dense(Rule):
    """Dense layer rule: ``forward(W, X, b)``, ``vjp(W, X, dZ) -> (dW, dX, db)``,
    ``jacobian(W, X)`` = dZ[:, j]/dX[:, j] = ``W`` for every sample."""

    kind = "layer"
    name = "dense"
    formula = "W @ X + b"
    derivative = "dW = dZ X^T, dX = W^T dZ, db = dZ 1"
    thresholds = {"all": Threshold("numpy @ (BLAS) always", NEVER.test)}
    plain = {"forward": lambda W, X, b: W @ X + b,
             "vjp": lambda W, X, dZ: (dZ @ X.T, W.T @ dZ, dZ.sum(axis=1, keepdims=True))}

    forward = staticmethod(dense_forward)
    vjp = staticmethod(dense_backward)

    @staticmethod
    def jacobian(W, X=None, b=None, *, axis=0, out=None, backend=None):
        """``dZ[:, j] / dX[:, j] = W`` for every sample ``j`` (``X`` and ``b`` do not enter).

        Parameters
        ----------
        W : array_like, shape (k, d)
        X, b : array_like, optional
            Accepted so that ``jacobian`` takes ``forward``'s arguments; checked against ``W`` when given.
        axis, backend
            As for :func:`dense_forward`.
        out : ndarray, shape (k, d), optional

        Returns
        -------
        ndarray, shape (k, d), a copy of ``W``
        """
        if X is None:
            check_backend(backend)
            W = float_array(W, "W", 2)
        else:
            W, X, _ = _layer_args(W, X, axis, backend)
        out = check_out(out, W.shape, W.dtype, (W,))
        if out is None:
            return W.copy()
        out[...] = W
        return out

    @staticmethod
    def reference(W, X, b):
        """``np.dot(W, X) + b``, as the notebook writes it."""
        return np.dot(W, X) + b

    @staticmethod
    def reference_vjp(W, X, dZ):
        """``(dZ X^T, W^T dZ, dZ 1)``, as the notebook writes it."""
        m = dZ.shape[1]
        return np.dot(dZ, X.T), np.dot(W.T, dZ), np.dot(dZ, np.ones((m, 1)))

    @staticmethod
    def sample(shape=(6, 5), dtype=np.float64, seed=0):
        """``X`` of ``shape`` (d, m) or (d,), ``W`` (d, d), ``b`` (d, 1) or (d,), a cotangent ``dZ`` shaped like Z."""
        r = np.random.default_rng(seed)
        d = shape[0]
        W, X, b = (r.standard_normal(s).astype(dtype) for s in ((d, d), shape, (d, 1) if len(shape) == 2 else (d,)))
        dZ = r.standard_normal(shape).astype(dtype)
        return Sample((W, X, b), dZ, vjp_args=(W, X))


dense = Dense()
