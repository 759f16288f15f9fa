"""Input validation shared by the public entry points.

Every message names the parameter in backticks, says what it must be and
what was received, so a user never sees a raw numpy or Numba traceback.
"""
from __future__ import annotations

import numpy as np

__all__ = ["as_point", "working_dtype", "check_finite", "annotate", "describe"]


def describe(value) -> str:
    """Short description of a received value for error messages."""
    if isinstance(value, np.ndarray):
        return f"ndarray of dtype {value.dtype} and shape {value.shape}"
    text = repr(value)
    return text if len(text) <= 60 else f"{type(value).__name__} ({text[:50]}...)"


def working_dtype(dtype) -> np.dtype:
    """float32 stays float32; float16, ints and bools are computed wider."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return np.dtype(np.float32) if dtype.itemsize <= 4 else np.dtype(dtype)
    if dtype.kind in "biu":
        return np.dtype(np.float64)
    raise TypeError(
        f"`x` must hold real numbers (float, int or bool); got dtype {dtype}.")


def as_point(x, name: str = "x") -> np.ndarray:
    """A private, writable float copy of ``x``; the caller's array is never touched."""
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged nested lists and the like
        raise TypeError(
            f"`{name}` must be array_like of real numbers; got {describe(x)} ({exc}).") from None
    if arr.dtype.kind not in "biuf":
        got = describe(x) if isinstance(x, np.ndarray) else f"{describe(x)} (dtype {arr.dtype})"
        raise TypeError(f"`{name}` must be array_like of real numbers; got {got}.")
    out = np.array(arr, dtype=working_dtype(arr.dtype), copy=True, order="C")
    check_finite(out, name)
    return out


def check_finite(arr: np.ndarray, name: str) -> None:
    if arr.size and not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[:5]
        where = ", ".join(str(tuple(int(i) for i in b)) for b in bad)
        raise ValueError(
            f"`{name}` must be finite; got NaN or inf at index {where}"
            + (" (and more)" if (~np.isfinite(arr)).sum() > 5 else "") + ".")


def annotate(exc: BaseException, note: str) -> BaseException:
    """Attach ``note`` to an exception raised inside the user's ``f``."""
    if hasattr(exc, "add_note"):  # Python >= 3.11
        exc.add_note(note)
    elif exc.args and isinstance(exc.args[0], str):
        exc.args = (f"{exc.args[0]}\n{note}",) + exc.args[1:]
    else:
        exc.args = exc.args + (note,)
    return exc
