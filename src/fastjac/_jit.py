"""The one place where Numba options live, and lazy compilation.

``import fastjac`` never imports Numba: :func:`lazy_njit` returns a thin
object that compiles the kernel on its first call and memoises it.
Compiled kernels are cached on disk (``cache=True``); when the cache
directory cannot be written (a read-only install with no writable home),
Numba refuses at decoration time with ``RuntimeError: cannot cache function
...: no locator available`` and we compile without the cache instead.

No fastmath flag that assumes no NaN or inf (``nnan``, ``ninf``) is ever
used: a derivative checker has to see NaN and inf.
"""
from __future__ import annotations

import threading

__all__ = ["JIT_OPTIONS", "SAFE_FASTMATH", "lazy_njit", "numba_available", "is_numba_dispatcher"]

#: Options every compiled kernel gets.  ``nogil`` lets callers run kernels
#: from several Python threads at once; ``error_model="numpy"`` makes 1/0
#: give inf like numpy instead of raising, so both paths agree.
JIT_OPTIONS = {"nogil": True, "cache": True, "error_model": "numpy"}

#: The only fastmath flags a kernel may opt into.  Deliberately excludes
#: ``nnan`` and ``ninf``.
SAFE_FASTMATH = frozenset({"contract", "arcp", "nsz"})

_lock = threading.RLock()


def numba_available() -> bool:
    try:
        import numba  # noqa: F401
    except ImportError:
        return False
    return True


def is_numba_dispatcher(f) -> bool:
    """True for an ``@numba.njit`` function, checked without importing Numba."""
    module = type(f).__module__ or ""
    return module.startswith("numba") and hasattr(f, "py_func") and hasattr(f, "signatures")


_typeof_registered = False


def _register_lazy_kernel_typeof():
    """Let one compiled kernel call another :class:`LazyKernel`.

    Numba types a global by ``typeof``; registering ``LazyKernel`` there makes
    a lazily compiled scalar function callable from an array loop (the
    scalar-function / array-loop layering), compiling the callee on demand.
    """
    global _typeof_registered
    if _typeof_registered:
        return
    import numba
    from numba.extending import typeof_impl

    @typeof_impl.register(LazyKernel)
    def _typeof_lazy_kernel(val, c):
        return numba.typeof(val.dispatcher)

    _typeof_registered = True


def _njit(py_func, options):
    import numba

    with _lock:
        _register_lazy_kernel_typeof()

    fastmath = options.get("fastmath")
    if fastmath:
        bad = set(fastmath) - SAFE_FASTMATH
        if bad or fastmath is True:
            raise ValueError(
                f"fastmath flags must be a subset of {sorted(SAFE_FASTMATH)}; got {fastmath!r}.")
    try:
        return numba.njit(**options)(py_func)
    except RuntimeError as exc:
        if "cannot cache" not in str(exc) or not options.get("cache"):
            raise
        return numba.njit(**{**options, "cache": False})(py_func)


class LazyKernel:
    """A Numba kernel compiled on first call, with JIT_OPTIONS merged in."""

    def __init__(self, py_func, options):
        self.py_func = py_func
        self.options = options
        self._dispatcher = None
        self.__name__ = py_func.__name__
        self.__doc__ = py_func.__doc__
        self.__wrapped__ = py_func

    @property
    def dispatcher(self):
        """The compiled ``numba`` dispatcher (imports Numba on first access)."""
        if self._dispatcher is None:
            with _lock:
                if self._dispatcher is None:
                    self._dispatcher = _njit(self.py_func, self.options)
        return self._dispatcher

    @property
    def compiled(self) -> bool:
        return self._dispatcher is not None

    def __call__(self, *args):
        return self.dispatcher(*args)

    def __repr__(self):
        state = "compiled" if self.compiled else "not compiled yet"
        return f"<fastjac lazy kernel {self.__name__} ({state})>"


def lazy_njit(py_func=None, **overrides):
    """Decorator: ``@lazy_njit`` or ``@lazy_njit(parallel=True, cache=False)``."""
    options = {**JIT_OPTIONS, **overrides}

    def wrap(func):
        return LazyKernel(func, options)

    return wrap(py_func) if py_func is not None else wrap
