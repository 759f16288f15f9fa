"""Validation and layout helpers shared by the rule families.

Everything here runs in Python, before any kernel sees the data, so a Numba
``TypingError`` never reaches a user: arrays are real float32/float64,
shapes agree, ``axis`` is in range, ``out`` is writeable, of the right shape
and dtype, and shares no memory with the inputs.

Layout (the notebook's): features on axis 0, samples on axis 1.  ``axis``
names the feature axis; every other axis is batch.  :func:`to_2d` gives the
canonical ``(n, B)`` view and :func:`from_2d` undoes it.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["DEFAULT_AXIS", "F32", "F64", "FLOATS", "Sample", "check_axis", "check_out", "contiguous",
           "empty_like_c", "finish", "float_array", "from_2d", "pair", "refuse_out", "scalar", "to_2d"]

F32 = np.dtype(np.float32)
F64 = np.dtype(np.float64)
FLOATS = (F32, F64)
#: The default of every ``axis=`` keyword.  The fast paths test ``axis is
#: DEFAULT_AXIS``: CPython caches small ints, so the literal default passes
#: and anything else (np.int64(0), 1, -1) takes the validating path.
DEFAULT_AXIS = 0

def _constant(dtype, value):
    c = np.array(value, dtype)
    c.setflags(write=False)
    return c


_CONSTANTS = {(dt, v): _constant(dt, v) for dt in FLOATS for v in (-1.0, 0.0, 0.5, 1.0, 1e-10)}


def scalar(dtype, value):
    """``value`` as a read-only 0-d array of ``dtype``, for ufunc operands.

    A 0-d array keeps float32 float32 (a numpy float64 scalar would not)
    and is the cheapest operand a ufunc takes: ``np.maximum(z, zero)`` costs
    0.40 us on 16 elements, with a Python ``0`` 0.71 us, with ``0.0`` 0.58 us.
    """
    c = _CONSTANTS.get((dtype, value))
    return _constant(dtype, value) if c is None else c


def float_array(x, name, min_ndim=0):
    """``x`` as a float32/float64 ndarray, never copied when it already is one.

    Integers and booleans become float64, float16 becomes float32, longdouble
    becomes float64; anything else (complex, strings, objects, ragged lists)
    raises a ``TypeError`` that names the parameter.
    """
    if type(x) is np.ndarray and x.dtype in FLOATS:
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
        if arr.dtype not in FLOATS:  # longdouble, non-native byte order
            arr = arr.astype(np.float64)
    if arr.ndim < min_ndim:
        raise ValueError(f"`{name}` must have at least {min_ndim} dimension(s); got shape {arr.shape}.")
    return arr


def pair(z, g, zname="z", gname="g", min_ndim=0):
    """Validate an input and its cotangent: same shape, a common float dtype."""
    z = float_array(z, zname, min_ndim)
    g = float_array(g, gname)
    if g.shape != z.shape:
        raise ValueError(f"`{gname}` must have the shape of `{zname}` {z.shape}; got shape {g.shape}.")
    if g.dtype != z.dtype:
        dt = np.result_type(z.dtype, g.dtype)
        z, g = z.astype(dt, copy=False), g.astype(dt, copy=False)
    return z, g


def check_axis(axis, ndim):
    """``axis`` as a non-negative int for an array of ``ndim`` dimensions."""
    if not isinstance(axis, (int, np.integer)) or isinstance(axis, (bool, np.bool_)):
        raise TypeError(f"`axis` must be an int; got {axis!r}.")
    if ndim == 0:
        if axis not in (0, -1):
            raise ValueError(f"`axis` must be 0 or -1 for a 0-d array; got {axis}.")
        return 0
    if not -ndim <= axis < ndim:
        raise ValueError(f"`axis` must be in [{-ndim}, {ndim - 1}] for an array of {ndim} dimension(s); got {axis}.")
    return int(axis) % ndim


def check_out(out, shape, dtype, inputs, name="out"):
    """``out`` (or None) checked to be a writeable array of ``shape`` and ``dtype``
    that shares no memory with ``inputs``."""
    if out is None:
        return None
    if not isinstance(out, np.ndarray):
        raise TypeError(f"`{name}` must be a numpy array; got {type(out).__name__}.")
    if out.shape != tuple(shape) or out.dtype != dtype:
        raise ValueError(f"`{name}` must have shape {tuple(shape)} and dtype {dtype}; "
                         f"got shape {out.shape} and dtype {out.dtype}.")
    if not out.flags.writeable:
        raise ValueError(f"`{name}` must be writeable; got a read-only array.")
    for a in inputs:
        if np.may_share_memory(out, a):
            raise ValueError(f"`{name}` must not share memory with the inputs; got an overlapping array.")
    return out


def refuse_out(out, what):
    """For results that are Python floats: ``out`` can only be None."""
    if out is not None:
        raise TypeError(f"`out` must be None: {what} is a Python float and cannot be written into an array; "
                        f"got {type(out).__name__}.")


def to_2d(z, axis):
    """Canonical ``(n, B)`` view (a copy only when reshaping requires one), and the batch shape."""
    if z.ndim == 0:
        return z.reshape(1, 1), ()
    if z.ndim == 1:
        return z.reshape(z.shape[0], 1), ()
    if axis == 0 and z.ndim == 2:
        return z, (z.shape[1],)
    moved = np.moveaxis(z, axis, 0)
    return moved.reshape(moved.shape[0], math.prod(moved.shape[1:])), moved.shape[1:]


def from_2d(r2, z, axis):
    """Inverse of :func:`to_2d` for arrays shaped like ``z``."""
    if z.ndim <= 1:
        return r2.reshape(z.shape)
    if axis == 0 and z.ndim == 2:
        return r2
    moved_shape = (z.shape[axis],) + tuple(s for i, s in enumerate(z.shape) if i != axis)
    return np.moveaxis(r2.reshape(moved_shape), 0, axis)


def empty_like_c(shape, dtype, out=None):
    """``out`` if it is C-contiguous (kernels write through ravel), else a new C array."""
    if out is not None and out.flags.c_contiguous:
        return out
    return np.empty(shape, dtype)


def finish(result, out):
    """Return ``result``, copied into ``out`` when the caller gave one."""
    if out is None:
        return result
    if result is not out:
        out[...] = result
    return out


def contiguous(x):
    """``x`` itself when C-contiguous, else a C-contiguous copy."""
    return x if x.flags.c_contiguous else np.ascontiguousarray(x)


class Sample:
    """Inputs in an op's domain, for tests, benchmarks and examples.

    Attributes
    ----------
    args : tuple of ndarray
        The positional inputs of ``forward`` and ``jacobian``.
    cotangent : ndarray or float
        What ``vjp`` takes after ``vjp_args``.
    vjp_args : tuple of ndarray
        The positional inputs of ``vjp`` before the cotangent: ``args``,
        except for the dense layer (its bias does not enter its VJP).
    """

    __slots__ = ("args", "cotangent", "vjp_args")

    def __init__(self, args, cotangent, vjp_args=None):
        self.args = tuple(args)
        self.cotangent = cotangent
        self.vjp_args = self.args if vjp_args is None else tuple(vjp_args)

    def __repr__(self):
        shapes = ", ".join(str(np.shape(a)) for a in self.args)
        return f"Sample(args of shapes {shapes}, cotangent of shape {np.shape(self.cotangent)})"
