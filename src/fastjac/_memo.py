"""Per-function memory: what fastjac learned about an ``f`` dies with ``f``.

Plans (the batching decision, the output layout, the tuned chunk size) are
remembered per function and per problem, in weak-keyed tables, so that a
function's entries vanish when the function is garbage-collected.  A bound
method is remembered through its instance (``obj.method`` is a new object
on every access, which a plain weak table would forget at once).  Functions
that cannot be weakly referenced are remembered by their code object, in a
small table of its own (:class:`CodeMemo`), whose hits the engine verifies.
"""
from __future__ import annotations

import types
import weakref
from collections import OrderedDict

__all__ = ["FunctionMemo", "CodeMemo", "code_of"]


def _target(f):
    """``(owner, subkey)``: a weak-referenceable owner and what to file under it."""
    if isinstance(f, types.MethodType):
        return f.__self__, ("method", f.__func__)
    return f, None


#: Types whose instances cannot be weakly referenced (numpy ufuncs, builtins):
#: learned on first sight, so later lookups skip the failing weak one (an
#: exception costs as much as the rest of a warm call's lookup).
_STRONG_TYPES: set = set()


class FunctionMemo:
    """``memo.get(f, key)`` / ``memo.set(f, key, value)``, weak in ``f``.

    Callables that cannot be weakly referenced (numpy ufuncs such as
    ``np.tanh``, builtins) are kept in a small table of strong references,
    least recently used first out: they are module-level singletons, which a
    strong reference does not keep alive any longer than they live anyway.
    """

    def __init__(self, strong=256):
        self._table = weakref.WeakKeyDictionary()
        self._strong: OrderedDict = OrderedDict()
        self._strong_size = strong

    def get(self, f, key):
        owner, sub = _target(f)
        if type(owner) not in _STRONG_TYPES:
            try:
                return self._table.get(owner, {}).get((sub, key))
            except TypeError:  # not weak-referenceable: nor is any of its type
                _STRONG_TYPES.add(type(owner))
        try:
            got = self._strong.get((owner, sub, key))
        except TypeError:  # unhashable
            return None
        if got is not None:
            self._strong.move_to_end((owner, sub, key))
        return got

    def set(self, f, key, value) -> None:
        owner, sub = _target(f)
        if type(owner) not in _STRONG_TYPES:
            try:
                self._table.setdefault(owner, {})[(sub, key)] = value
                return
            except TypeError:
                _STRONG_TYPES.add(type(owner))
        try:
            self._strong[(owner, sub, key)] = value
        except TypeError:
            return
        while len(self._strong) > self._strong_size:
            self._strong.popitem(last=False)

    def clear(self) -> None:
        self._table.clear()
        self._strong.clear()


def code_of(f):
    """The code object behind ``f`` (plain function, closure, method, jitted), or None."""
    for attr in ("py_func", "__func__"):
        f = getattr(f, attr, f)
    return getattr(f, "__code__", None)


class CodeMemo:
    """Decisions per code object, for closures made afresh on every call.

    Bounded (least recently used first out): code objects live as long as
    their module, so the table would otherwise only grow.
    """

    def __init__(self, size=512):
        self._table: OrderedDict = OrderedDict()
        self.size = size

    def get(self, f, key):
        code = code_of(f)
        if code is None:
            return None
        got = self._table.get((code, key))
        if got is not None:
            self._table.move_to_end((code, key))
        return got

    def set(self, f, key, value) -> None:
        code = code_of(f)
        if code is None:
            return
        self._table[(code, key)] = value
        self._table.move_to_end((code, key))
        while len(self._table) > self.size:
            self._table.popitem(last=False)

    def clear(self) -> None:
        self._table.clear()
