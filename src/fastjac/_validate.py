"""Input validation shared by the public entry points.

Every message names the parameter in backticks, says what it must be and
what was received, so a user never sees a raw numpy or Numba traceback.
"""
from __future__ import annotations

import numbers

import numpy as np

__all__ = ["as_point", "working_dtype", "check_finite", "annotate", "describe", "check_int",
           "check_choice", "check_number", "check_seed", "make_rng", "real_array"]


def describe(value) -> str:
    """Short description of a received value for error messages."""
    if isinstance(value, np.ndarray):
        return f"ndarray of dtype {value.dtype} and shape {value.shape}"
    text = repr(value)
    return text if len(text) <= 60 else f"{type(value).__name__} ({text[:50]}...)"


def check_int(value, name, minimum=0, maximum=None) -> int:
    """``value`` as an int in ``[minimum, maximum]``; bools and floats are refused."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or \
            value < minimum or (maximum is not None and value > maximum):
        span = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"`{name}` must be an integer {span}; got {describe(value)}.")
    return int(value)


def check_choice(value, name, choices):
    """``value`` if it is one of ``choices`` (compared by type and value), else a clear error."""
    for c in choices:
        if type(value) is type(c) and value == c:
            return c
        if isinstance(c, bool) and isinstance(value, np.bool_) and bool(value) == c:
            return c
    raise ValueError(f"`{name}` must be one of {list(choices)}; got {describe(value)}.")


def check_number(value, name, *, positive=False, allow_none=True):
    """A finite real number (``> 0`` if ``positive``, else ``>= 0``), or None."""
    if value is None and allow_none:
        return None
    ok = (isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
          and np.isfinite(value) and (value > 0 if positive else value >= 0))
    if not ok:
        need = "a finite number > 0" if positive else "a finite number >= 0"
        raise ValueError(f"`{name}` must be {need}{' or None' if allow_none else ''}; "
                         f"got {describe(value)}.")
    return float(value)


def check_seed(seed, name="seed"):
    """A seed for ``numpy.random.default_rng``: None, an int >= 0 or a Generator."""
    if seed is None or isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"`{name}` must be an integer >= 0, a numpy.random.Generator or None; "
                         f"got {describe(seed)}.")
    return int(seed)


def make_rng(seed, name="seed") -> np.random.Generator:
    seed = check_seed(seed, name)
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def real_array(value, name, kinds, what):
    """``np.asarray(value)`` if its dtype kind is one of ``kinds``, else a clear error."""
    try:
        arr = np.asarray(value)
    except Exception:  # ragged nested lists and the like
        arr = np.asarray(None)
    if arr.dtype.kind not in kinds:
        raise TypeError(f"`{name}` must be {what}; got {describe(value)}.")
    return arr


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
    if type(x) is np.ndarray and x.dtype.kind == "f" and x.dtype.itemsize in (4, 8):
        out = x.copy()  # the common case, without the general conversion
    else:
        if isinstance(x, np.ma.MaskedArray) and np.ma.getmaskarray(x).any():
            raise ValueError(
                f"`{name}` must be a plain array; got a masked array with "
                f"{int(np.ma.getmaskarray(x).sum())} masked entries. fastjac differentiates "
                f"every entry and would ignore the mask: pass `{name}.filled(value)` or "
                f"`{name}.data` to choose what the masked entries hold.")
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
    # One reduction on the fast path: a sum is finite iff every entry is,
    # barring overflow, which the elementwise test below then rules out.
    if arr.size and not np.isfinite(arr.sum()) and not np.isfinite(arr).all():
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
