"""How a Jacobian was computed: :class:`JacobianInfo`."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..stencils import Stencil

__all__ = ["JacobianInfo"]


@dataclass
class JacobianInfo:
    """How a Jacobian was computed: what a check report needs to judge it.

    Attributes
    ----------
    fx : ndarray
        ``f(x)``.
    stencil : Stencil
    step : ndarray, shape x.shape
        The absolute step actually taken per element (per direction for jvp).
    eps : float
        Machine epsilon used by the step rule.
    strategy : str
        ``"vectorized"`` (a leading batch axis), ``"vectorized-trailing"``
        (points as extra trailing columns), ``"loop"`` or ``"numba"``.
    nfev : int
        Points at which ``f`` was evaluated: ``f(x)``, the batching probe and
        its single-call verifications, retries and guards included.
    ncalls : int
        Calls of ``f`` (a vectorized call evaluates many points).
    nblocks, block_size : int
        How the directions were chunked.
    extra : list of ndarray
        Further estimates requested through ``combos``, same shape as J.
    fallback : str or None
        Why ``f`` was called once per point, and how to make it accept a
        batch (``None`` when it was batched, or when ``vectorized=False``
        was asked for).
    notes : list of str
        Anything else worth knowing (e.g. ``f`` rejected read-only input and
        got verified writable copies).
    """

    fx: np.ndarray
    stencil: Stencil
    step: np.ndarray
    eps: float
    strategy: str
    nfev: int = 0
    ncalls: int = 0
    nblocks: int = 0
    block_size: int = 0
    seconds: float = 0.0
    extra: list = field(default_factory=list)
    #: Groups of columns perturbed together (``sparsity=`` runs; 0 otherwise).
    ncolors: int = 0
    #: Estimated peak bytes fastjac itself allocates (result plus one chunk).
    peak_bytes: int = 0
    fallback: str | None = None
    notes: list = field(default_factory=list)
