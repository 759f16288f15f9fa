"""Per-function memory: what fastjac learned about an ``f`` dies with ``f``.

The ``vectorized="auto"`` decision and the tuned chunk size are remembered per
function (and per problem shape), in a weak-keyed table so that a function's
entries vanish when the function is garbage-collected.  Functions that cannot
be weakly referenced are simply not remembered.
"""
from __future__ import annotations

import weakref

__all__ = ["FunctionMemo"]


class FunctionMemo:
    """``memo.get(f, key)`` / ``memo.set(f, key, value)``, weak in ``f``."""

    def __init__(self):
        self._table = weakref.WeakKeyDictionary()

    def get(self, f, key):
        try:
            return self._table.get(f, {}).get(key)
        except TypeError:  # not weak-referenceable (or unhashable)
            return None

    def set(self, f, key, value) -> None:
        try:
            self._table.setdefault(f, {})[key] = value
        except TypeError:
            pass

    def clear(self) -> None:
        self._table.clear()
