"""Backend choice for :mod:`fastjac.nn`: compiled kernel, numpy, or both.

Every rule method has a :class:`Route`: its implementations (``"numpy"``,
plus ``"kernel"`` when everything runs compiled and ``"hybrid"`` when numpy
runs the transcendental, SIMD-vectorised part and one compiled pass fuses
the rest) and the measured crossover that picks one for ``backend="auto"``.
``"numba"`` forces the compiled path (the kernel where there is one, else
the hybrid), ``"numpy"`` forces numpy (Numba is then never imported).  The
process-wide default is set with :func:`set_backend` and overridden per call
by ``backend=``.

Where the crossovers come from: the benchmark groups
``nn|{op}|{method}|B={B}|n={n}`` of ``benchmarks/bench_nn.py`` (float32:
``nn|{op}|{method}.float32|B={B}|n={n}``), which time the dispatched call
beside the plain numpy expression.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import partial
from typing import Callable


__all__ = ["BACKENDS", "ALWAYS", "NEVER", "Crossover", "Route", "Threshold", "check_backend",
           "defaults", "get_backend", "numba_ok", "set_backend", "use_numba"]

BACKENDS = ("auto", "numba", "numpy")

_ITEMSIZE_NAMES = {4: "float32", 8: "float64"}


class _Defaults:
    """The process-wide default backend (read by every rule call)."""

    __slots__ = ("backend", "auto")

    def __init__(self):
        self.backend = "auto"
        self.auto = True  # read by the rules' fast paths: one attribute, no comparison


#: The process-wide default; change it with :func:`set_backend`.
defaults = _Defaults()
_numba_ok: bool | None = None


def check_backend(backend):
    """Raise the standard error unless ``backend`` is one of :data:`BACKENDS` (or None)."""
    if backend is not None and backend not in BACKENDS:
        raise ValueError(
            f"`backend` must be one of {', '.join(repr(b) for b in BACKENDS)} or None; got {backend!r}.")


def set_backend(backend: str) -> str:
    """Set the process-wide default backend; returns the previous one.

    Parameters
    ----------
    backend : {"auto", "numba", "numpy"}

    Returns
    -------
    str
        The previous default, so that a caller can restore it.

    Examples
    --------
    >>> from fastjac import nn
    >>> previous = nn.set_backend("numpy")
    >>> nn.get_backend()
    'numpy'
    >>> nn.set_backend(previous)
    'numpy'
    """
    if backend is None:
        raise ValueError(f"`backend` must be one of {', '.join(repr(b) for b in BACKENDS)}; got None.")
    check_backend(backend)
    previous = defaults.backend
    defaults.backend, defaults.auto = backend, backend == "auto"
    return previous


def get_backend() -> str:
    """The process-wide default backend (``"auto"`` unless :func:`set_backend` changed it)."""
    return defaults.backend


def numba_ok() -> bool:
    """Whether Numba can be imported (checked once, on first need)."""
    global _numba_ok
    if _numba_ok is None:
        from .._jit import numba_available

        _numba_ok = numba_available()
    return _numba_ok


def _resolve(backend):
    """``backend`` (None: the default) as one of "auto", "numba", "numpy"."""
    if backend is None:
        return defaults.backend
    check_backend(backend)
    if backend == "numba" and not numba_ok():
        raise RuntimeError("`backend` 'numba' was requested but Numba cannot be imported; "
                           "install numba or use backend='numpy'.")
    return backend


@dataclass(frozen=True)
class Threshold:
    """When the compiled path beats numpy, as measured, for ops with a 2-D layout.

    ``rule`` is a readable statement (rendered in the docs), ``test`` the
    predicate ``test(n, B, itemsize) -> bool`` with ``n`` the feature width and
    ``B`` the batch size; ``source`` says what measured it.
    """

    rule: str
    test: Callable[[int, int, int], bool]
    source: str = ""

    def __call__(self, n: int, B: int, itemsize: int) -> bool:
        return bool(self.test(n, B, itemsize))


NEVER = Threshold("never (numpy always wins)", lambda n, B, s: False)
ALWAYS = Threshold("always", lambda n, B, s: True)


def use_numba(backend, threshold, n: int, B: int, itemsize: int) -> bool:
    """Resolve ``backend`` (None means the module default) to "run compiled?"."""
    backend = _resolve(backend)
    if backend == "numpy":
        return False
    if backend == "numba":
        return True
    return threshold(n, B, itemsize) and numba_ok()


@dataclass(frozen=True)
class Crossover:
    """Which implementation ``backend="auto"`` runs.

    ``small`` runs up to ``up_to[itemsize]`` elements (``n * B``), ``large``
    above; a missing itemsize means ``large`` always.  That is all an
    elementwise op needs: its cost depends on the element count, not on the
    layout.  For ops where the layout matters, ``when`` (a
    :class:`Threshold`) decides instead: ``small`` where it holds.
    """

    small: str
    large: str
    up_to: dict = field(default_factory=dict)
    source: str = ""
    when: Threshold | None = None

    def path(self, n: int, B: int, itemsize: int) -> str:
        """The implementation name for ``n`` features by ``B`` samples."""
        if self.when is not None:
            return self.small if self.when(n, B, itemsize) else self.large
        return self.small if n * B <= self.up_to.get(itemsize, -1) else self.large

    def __call__(self, n: int, B: int, itemsize: int) -> bool:
        """:class:`Threshold`'s protocol: does ``auto`` run compiled code here?"""
        return self.path(n, B, itemsize) != "numpy"

    @property
    def rule(self) -> str:
        if self.when is not None:
            return f"{self.small} when {self.when.rule}, else {self.large}"
        if self.small == self.large or not self.up_to:
            return f"{self.large} at every size"
        limits = " / ".join(f"{_ITEMSIZE_NAMES[s]} <= {n}" for s, n in sorted(self.up_to.items(), reverse=True))
        return f"{self.small} up to {limits} elements, {self.large} above"


class Route:
    """The implementations of one rule method and the crossover that picks one.

    Parameters
    ----------
    numpy : callable
        Pure numpy; always available.
    crossover : Crossover
    kernel : LazyKernel, optional
        Runs entirely compiled; called as ``kernel(*bind, *args)``.
    hybrid : callable, optional
        numpy for the transcendental part, then ``finisher``; called as
        ``hybrid(*finishers, *args)`` with the compiled finishers.
    finisher : LazyKernel or tuple of LazyKernel, optional
        The hybrid's compiled passes.
    bind : tuple, optional
        Leading arguments of ``kernel`` (leaky ReLU's slope, a clip).

    Notes
    -----
    ``fast`` maps a dtype to ``(up_to, small, large)`` with ``small`` and
    ``large`` ready to call: compiled dispatchers, not lazy wrappers, which
    cost ~0.3 us a call.  The rules' fast paths read it for ``backend="auto"``;
    :meth:`pick` fills it on the first call in each dtype, so the first call
    validates and compiles and later ones skip both.
    """

    def __init__(self, numpy, crossover, *, kernel=None, hybrid=None, finisher=None, bind=()):
        if (hybrid is None) != (finisher is None):
            raise ValueError("a hybrid implementation needs its finisher kernel, and only it")
        self.numpy = numpy
        self.kernel = kernel
        self.hybrid = hybrid
        self.finisher = finisher if isinstance(finisher, tuple) or finisher is None else (finisher,)
        self.crossover = crossover
        self.bind = tuple(bind)
        self.fast = {}

    def implementations(self) -> dict:
        """``{"numpy": f, "kernel": f, "hybrid": f}``, the ones this method has,
        each with the method's implementation signature (compiled on first call)."""
        return {name: self._callable(name, compiled=False) for name in ("numpy", "kernel", "hybrid")
                if getattr(self, name) is not None}

    def _callable(self, name, compiled=True):
        if name == "numpy":
            return self.numpy
        if name == "kernel":
            kernel = self.kernel.dispatcher if compiled else self.kernel
            return partial(kernel, *self.bind) if self.bind else kernel
        return partial(self.hybrid, *(k.dispatcher if compiled else k for k in self.finisher))

    def pick(self, backend, n: int, B: int, dtype) -> Callable:
        """The implementation to run for ``backend`` on ``n`` features by ``B`` samples of ``dtype``."""
        backend = _resolve(backend)
        if backend == "numpy":
            return self.numpy
        if backend == "numba":
            return self._callable("kernel" if self.kernel is not None else
                                  "hybrid" if self.hybrid is not None else "numpy")
        if not numba_ok():
            return self.numpy
        crossover = self.crossover
        if crossover.when is not None:
            return self._callable(crossover.path(n, B, dtype.itemsize))
        if dtype not in self.fast:
            up_to = crossover.up_to.get(dtype.itemsize, -1) if crossover.small != crossover.large else math.inf
            self.fast[dtype] = (up_to, self._callable(crossover.small), self._callable(crossover.large))
        up_to, small, large = self.fast[dtype]
        return small if n * B <= up_to else large
