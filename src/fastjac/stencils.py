"""Finite-difference stencils as a table: ``(method, order) -> Stencil``.

Every estimate fastjac makes is ``sum_s w_s * f(x + c_s * h) / h`` for one
stencil, so adding a scheme means adding one row here; the engine, the step
rule, the checks and the docs all read the same table.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from fractions import Fraction as Fr

import numpy as np

__all__ = ["Stencil", "STENCILS", "DEFAULT_ORDER", "get_stencil"]


@dataclass(frozen=True)
class Stencil:
    """One finite-difference scheme for a first derivative.

    Attributes
    ----------
    method : str
        ``"central"``, ``"forward"``, ``"backward"`` or ``"complex"``.
    order : int
        Order of the truncation error, ``O(h**order)``.
    offsets : tuple of float
        Multiples ``c_s`` of the step at which ``f`` is evaluated.
    weights : tuple of float
        Weights ``w_s``; the estimate is ``sum_s w_s f(x + c_s h) / h``.
    truncation : float
        Magnitude of the leading truncation coefficient: the error is about
        ``truncation * |f^(order+1)| * h**order``.  Used by the error model.
    """

    method: str
    order: int
    offsets: tuple
    weights: tuple
    truncation: float

    @property
    def complex_step(self) -> bool:
        return self.method == "complex"

    @cached_property
    def nonzero(self) -> tuple:
        """``(offsets, weights)`` without the ``c = 0`` term, which reuses ``f(x)``."""
        pairs = [(c, w) for c, w in zip(self.offsets, self.weights) if c != 0]
        return tuple(p[0] for p in pairs), tuple(p[1] for p in pairs)

    @property
    def center_weight(self) -> float:
        """Weight of ``f(x)`` itself (non-zero only for one-sided stencils)."""
        return sum(w for c, w in zip(self.offsets, self.weights) if c == 0)

    @property
    def evaluations_per_column(self) -> int:
        return len(self.nonzero[0])


def _s(method, order, offsets, weights, truncation):
    return Stencil(method, order, tuple(float(c) for c in offsets),
                   tuple(float(w) for w in weights), float(truncation))


# Weights from Fornberg (1988), "Generation of finite difference formulas on
# arbitrarily spaced grids"; truncation constants from the Taylor remainder.
STENCILS: dict = {
    ("central", 2): _s("central", 2, (-1, 1), (Fr(-1, 2), Fr(1, 2)), Fr(1, 6)),
    ("central", 4): _s("central", 4, (-2, -1, 1, 2),
                       (Fr(1, 12), Fr(-2, 3), Fr(2, 3), Fr(-1, 12)), Fr(1, 30)),
    ("central", 6): _s("central", 6, (-3, -2, -1, 1, 2, 3),
                       (Fr(-1, 60), Fr(3, 20), Fr(-3, 4), Fr(3, 4), Fr(-3, 20), Fr(1, 60)),
                       Fr(1, 140)),
    ("forward", 1): _s("forward", 1, (0, 1), (-1, 1), Fr(1, 2)),
    ("forward", 2): _s("forward", 2, (0, 1, 2), (Fr(-3, 2), 2, Fr(-1, 2)), Fr(1, 3)),
    ("backward", 1): _s("backward", 1, (-1, 0), (-1, 1), Fr(1, 2)),
    ("backward", 2): _s("backward", 2, (-2, -1, 0), (Fr(1, 2), -2, Fr(3, 2)), Fr(1, 3)),
    # Im f(x + i h) / h: no subtraction, so no cancellation; error h**2 f'''/6.
    ("complex", 2): _s("complex", 2, (1,), (1,), Fr(1, 6)),
}

#: The order used when ``order=None``: each method's natural order.
DEFAULT_ORDER = {"central": 2, "forward": 1, "backward": 1, "complex": 2}


def get_stencil(method: str, order: int | None = None) -> Stencil:
    """Look up a stencil, with an error that lists the valid choices."""
    if method not in DEFAULT_ORDER:
        raise ValueError(
            f"`method` must be one of {sorted(DEFAULT_ORDER)}; got {method!r}.")
    if order is None:
        order = DEFAULT_ORDER[method]
    if isinstance(order, bool) or not isinstance(order, (int, np.integer)):
        valid = sorted(o for m, o in STENCILS if m == method)
        raise ValueError(
            f"`order` for method {method!r} must be one of {valid}; got {order!r}.")
    key = (method, int(order))
    if key not in STENCILS:
        valid = sorted(o for m, o in STENCILS if m == method)
        raise ValueError(
            f"`order` for method {method!r} must be one of {valid}; got {order!r}.")
    return STENCILS[key]
