"""Backend choice for :mod:`fastjac.nn`: compiled kernel or numpy.

Each rule in :mod:`._rules` carries a :class:`Threshold` (``numba_if``),
measured on the development machine and recorded next to the rule.  With
``backend="auto"`` (the default) the rule's threshold decides; ``"numba"``
and ``"numpy"`` force one path.  The module-level default is set with
:func:`set_backend` (process-wide) and overridden per call by ``backend=``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

__all__ = ["BACKENDS", "Threshold", "set_backend", "get_backend", "use_numba"]

BACKENDS = ("auto", "numba", "numpy")

_default = "auto"
_numba_ok: bool | None = None


def set_backend(backend: str) -> str:
    """Set the process-wide default backend; returns the previous one.

    Parameters
    ----------
    backend : {"auto", "numba", "numpy"}
    """
    global _default
    _check(backend)
    previous, _default = _default, backend
    return previous


def get_backend() -> str:
    """The process-wide default backend."""
    return _default


def _check(backend):
    if backend not in BACKENDS:
        raise ValueError(
            f"`backend` must be one of {', '.join(repr(b) for b in BACKENDS)}; got {backend!r}.")


def _numba_importable() -> bool:
    global _numba_ok
    if _numba_ok is None:
        from .._jit import numba_available

        _numba_ok = numba_available()
    return _numba_ok


@dataclass(frozen=True)
class Threshold:
    """When the compiled kernel beats numpy, as measured.

    ``rule`` is a readable statement (rendered in the docs), ``test`` the
    predicate ``test(n, B, itemsize) -> bool`` with ``n`` the feature width,
    ``B`` the batch size; ``source`` says what measured it.
    """

    rule: str
    test: Callable[[int, int, int], bool]
    source: str = ""

    def __call__(self, n: int, B: int, itemsize: int) -> bool:
        return bool(self.test(n, B, itemsize))


NEVER = Threshold("never (numpy always wins)", lambda n, B, s: False)
ALWAYS = Threshold("always", lambda n, B, s: True)


def use_numba(backend, threshold: Threshold, n: int, B: int, itemsize: int) -> bool:
    """Resolve ``backend`` (None means the module default) to a path."""
    if backend is None:
        backend = _default
    elif backend not in BACKENDS:
        _check(backend)
    if backend == "numpy":
        return False
    if backend == "numba":
        if not _numba_importable():
            raise RuntimeError("`backend` 'numba' was requested but Numba cannot be imported.")
        return True
    return threshold(n, B, itemsize) and _numba_importable()
