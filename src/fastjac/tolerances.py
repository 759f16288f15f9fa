"""Default tolerances of the checks, as a table keyed by dtype.

In the manner of jax's ``public_test_util``: one table, merged with the
user's overrides, keyed by the *least precise* dtype involved (x, f(x) and
the expected derivative).  Tolerances are per entry and never scale with
the size of the output.

How the defaults were chosen (see ``docs/checks.md``): a check's first pass
is a central difference whose error model (truncation plus round-off
``EPS |f| / h`` at the balanced step) is ~4e-11 relative in float64 (order 2)
and ~3e-6 in float32 (order 4).  ``rtol`` sits two or more orders of
magnitude above that error and at least an order below the smallest bug the
mutation suite must catch (a 1.01 scale).  Entries between the tolerance and
the estimated noise go to a second opinion, not to a verdict.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ._validate import check_number

__all__ = ["Tolerance", "TOLERANCES", "tolerance_for", "tolerance_dtype",
           "NOISE_FACTOR", "ROUNDOFF_FACTOR"]


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float


#: dtype name -> default tolerance.
TOLERANCES = {
    "float16": Tolerance(rtol=3e-2, atol=1e-3),
    "float32": Tolerance(rtol=1e-3, atol=1e-5),
    "float64": Tolerance(rtol=1e-6, atol=1e-9),
    "longdouble": Tolerance(rtol=1e-7, atol=1e-10),
}

#: A mismatch is "within noise" if it is below this many times the
#: estimated finite-difference error (the estimate is itself an order of
#: magnitude statement, so a factor of a few absorbs its scatter).
NOISE_FACTOR = 3.0

#: Rounding error of one evaluation of f, in units of ``EPS * scale(f)``:
#: a handful of roundings per output (an exp, a sum, a division).
ROUNDOFF_FACTOR = 4.0


@lru_cache(maxsize=64)
def _name(dtype) -> str:
    dtype = np.dtype(dtype)
    if dtype.kind in "biu":
        return "float64"
    if dtype.kind == "c":
        dtype = np.finfo(dtype).dtype
    if dtype.kind != "f":
        raise TypeError(f"`dtype` must be a real floating dtype; got {dtype}.")
    if dtype.itemsize > 8:
        return "longdouble"
    return dtype.name


_ORDER = {name: i for i, name in enumerate(TOLERANCES)}


def tolerance_dtype(*dtypes) -> str:
    """The least precise floating dtype among ``dtypes``, as a table key."""
    names = [_name(d if isinstance(d, (str, type)) else np.dtype(d)) for d in dtypes
             if d is not None] or ["float64"]
    return min(names, key=_ORDER.__getitem__)


def tolerance_for(*dtypes, rtol=None, atol=None) -> Tolerance:
    """The table's tolerance for the least precise dtype, merged with overrides.

    Examples
    --------
    >>> import numpy as np
    >>> from fastjac.tolerances import tolerance_for
    >>> tolerance_for(np.float64, np.float32)
    Tolerance(rtol=0.001, atol=1e-05)
    >>> tolerance_for(np.float64, atol=0.0)
    Tolerance(rtol=1e-06, atol=0.0)
    """
    base = TOLERANCES[tolerance_dtype(*dtypes)]
    rtol, atol = check_number(rtol, "rtol"), check_number(atol, "atol")
    return Tolerance(rtol=base.rtol if rtol is None else rtol,
                     atol=base.atol if atol is None else atol)


# ---------------------------------------------------------------------------
# GradientMonitor (fastjac.monitor): its default rtol, per parameter dtype.
# ---------------------------------------------------------------------------
#: The monitor compares second-order central differences along whole-vector
#: directions, where the error model (loss round-off, truncation from the
#: same evaluations, gradient rounding, a measured round-off probe) does the
#: work; ``rtol`` is only a floor for what the model does not cover, so it
#: sits far above the checks' (a 0.5x bug in one parameter gives relative
#: errors of 0.18-0.76 on the whole-vector directions, see docs/monitor.md).
MONITOR_RTOL = {"float16": 1e-2, "float32": 1e-2, "float64": 1e-3, "longdouble": 1e-3}


def monitor_rtol(dtype) -> float:
    """The monitor's default ``rtol`` for parameters of ``dtype``.

    Examples
    --------
    >>> import numpy as np
    >>> from fastjac.tolerances import monitor_rtol
    >>> monitor_rtol(np.float32), monitor_rtol(np.float64)
    (0.01, 0.001)
    """
    return MONITOR_RTOL[tolerance_dtype(dtype)]


__all__ += ["MONITOR_RTOL", "monitor_rtol"]
