"""Prepared plans: validation, ``f(x)``, the step rule and the batching decision, once.

The first call for a given function and problem layout (``x``'s shape and
dtype, the stencil family, ``vectorized``) validates the options, probes
how ``f`` batches and records what it learned in a :class:`Plan`, kept per
function in a weak table.  Later calls reuse the plan: they still validate
``x``'s values (a private finite copy) and evaluate ``f(x)`` (or take the
caller's, as scipy's ``approx_derivative(f0=...)`` does), and a changed
output shape or dtype makes a new plan instead of being served from the old.

A closure made afresh on every call (``lambda z: loss(y, z)`` inside a test
loop) is a new object each time; its plan is seeded from the last decision
for the same code object and verified on one point instead of re-probed.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, field

import numpy as np

from .._inputs import is_multi, pack
from .._memo import CodeMemo, FunctionMemo
from .._validate import as_point, check_choice, describe, real_array
from ..stencils import Stencil, get_stencil
from ..steps import absolute_step, eps_for
from .strategies import STRATEGIES, Task, as_output

__all__ = ["Plan", "Prepared", "prepare", "VECTORIZED_CHOICES", "PROGRESS_CHOICES",
           "check_callable", "check_executor", "check_step", "result_dtype"]

VECTORIZED_CHOICES = ("auto", True, False, "leading", "trailing")
PROGRESS_CHOICES = ("auto", True, False)


@dataclass
class Plan:
    """What the engine learned about ``f`` for one problem layout."""

    out_shape: tuple
    out_dtype: str
    strategy: str | None = None     # None until the first block decides it
    verify: bool = False            # inherited from another closure: verify before trusting
    verified: set = field(default_factory=set)   # batch sizes (points) checked against single calls
    writable: bool = False          # f rejects read-only input
    serialize: bool | None = None   # f reuses its output buffer (None: not yet known)
    reasons: tuple = ()             # why f runs point by point


_PLANS = FunctionMemo()
_CODE_DECISIONS = CodeMemo()


def remember_decision(f, key, plan) -> None:
    _CODE_DECISIONS.set(f, key, (plan.strategy, plan.writable, plan.reasons))


def check_callable(f):
    if not callable(f):
        raise TypeError(f"`f` must be callable; got {describe(f)}.")


def check_executor(executor):
    if executor is not None and not callable(getattr(executor, "submit", None)):
        raise TypeError(
            "`executor` must be a concurrent.futures.Executor or an object with the same "
            f"submit() method (e.g. a dask.distributed Client); got {describe(executor)}.")


def _check_max_memory(max_memory):
    if max_memory is None:
        return None
    ok = (isinstance(max_memory, numbers.Real) and not isinstance(max_memory, (bool, np.bool_))
          and np.isfinite(max_memory) and max_memory >= 1)
    if not ok:
        raise ValueError(
            f"`max_memory` must be a positive number of bytes or None; got {describe(max_memory)}.")
    return int(max_memory)


def check_step(step, x0):
    """Validate ``step`` for a flat point ``x0``; returns it flat (or None)."""
    if step is None:
        return None
    if isinstance(step, (bool, np.bool_)):
        raise TypeError(f"`step` must be a positive number or array of them; got {step!r}.")
    arr = real_array(step, "step", "iuf", "a positive number or array of them")
    if arr.ndim and arr.shape != x0.shape and arr.size != x0.size:
        raise ValueError(
            f"`step` must be a scalar or have one value per element of x ({x0.size}); "
            f"got shape {arr.shape}.")
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"`step` must be finite and > 0; got {describe(step)}.")
    return np.ravel(arr)


def result_dtype(x0, fx):
    dtype = np.result_type(x0.dtype, fx.dtype if fx.dtype.kind == "f" else np.float64)
    return np.dtype(np.float32) if dtype == np.float32 else np.dtype(np.float64)


@dataclass
class Prepared:
    """A plan bound to one point: the internal API every entry point drives.

    ``run`` (in :mod:`.pipeline`) evaluates blocks of directions and hands
    the combined differences to a scatter function; ``values`` evaluates one
    block and returns the raw values; ``steps`` applies the step rule.
    """

    f: object                 # the user's function
    task: Task
    plan: Plan
    key: tuple
    stencil: Stencil
    x0: np.ndarray            # (n,) private working copy
    x_shape: tuple
    fx: np.ndarray            # f(x), a private copy
    eps: float
    dtype: np.dtype           # result dtype
    vectorized: object
    max_memory: int | None
    executor: object
    progress: object
    spec: object = None       # InputSpec for tuple/dict x
    nfev: int = 0
    ncalls: int = 0
    y0: object = None         # f's own output at x (to tell whether f reuses its buffer)

    @property
    def n(self) -> int:
        return self.x0.shape[0]

    @property
    def m(self) -> int:
        return self.fx.size

    @property
    def out_shape(self) -> tuple:
        return self.fx.shape

    @property
    def strategy(self) -> str | None:
        return self.plan.strategy

    @property
    def batched(self) -> bool:
        return self.plan.strategy is not None and STRATEGIES[self.plan.strategy].batched

    def steps(self, step=None, out=None) -> np.ndarray:
        """Per-coordinate steps actually taken (the step rule, or ``step``);
        ``out`` is an optional scratch buffer for them (the step rule only)."""
        return absolute_step(self.x0, self.stencil, self.eps, check_step(step, self.x0),
                             out=out if step is None else None)

    @property
    def fallback(self) -> str | None:
        """Why ``f`` runs point by point, or None."""
        from .probe import fallback_note

        if self.plan.reasons and not self.batched:
            return fallback_note(self.plan.reasons, self.plan.strategy)
        return None

    def notes(self) -> list:
        out = []
        if self.task.writable:
            out.append("f rejected read-only input, so it got writable copies of each point, "
                       "and every call was verified not to have written into them.")
        return out


def _validate_options(vectorized, max_memory, progress, executor):
    if isinstance(vectorized, np.ndarray) or not isinstance(vectorized, (bool, str, np.bool_)):
        raise ValueError(
            f"`vectorized` must be one of {list(VECTORIZED_CHOICES)}; got {describe(vectorized)}.")
    vectorized = check_choice(vectorized, "vectorized", VECTORIZED_CHOICES)
    if progress is None:  # accepted as "no bar", as before
        progress = False
    if not isinstance(progress, (bool, str, np.bool_)):
        raise ValueError(f"`progress` must be one of ['auto', True, False]; got {describe(progress)}.")
    progress = check_choice(progress, "progress", PROGRESS_CHOICES)
    check_executor(executor)
    return vectorized, _check_max_memory(max_memory), progress


def prepare(f, x, *, method="central", order=None, vectorized="auto", max_memory=None,
            executor=None, progress="auto", f0=None) -> Prepared:
    """Validate, evaluate ``f(x)`` (unless ``f0`` is given) and find or make the plan.

    ``x`` may be a tuple/dict of arrays (``f(*x)`` / ``f(**x)``): they are
    packed into one flat vector (``Prepared.spec`` says how).
    """
    check_callable(f)
    stencil = get_stencil(method, order)
    vectorized, max_memory, progress = _validate_options(vectorized, max_memory, progress,
                                                         executor)
    if is_multi(x):
        flat, spec = pack(x)
        g, x_shape, signature = spec.wrap(f), flat.shape, (spec.kind, spec.keys, spec.shapes)
    else:
        flat, spec = as_point(x), None
        g, x_shape, signature = f, flat.shape, None
    x0 = flat.reshape(-1)
    key = (x_shape, x0.dtype.str, stencil.complex_step, vectorized, signature)
    plan = _PLANS.get(f, key)
    task = Task(g, x0, x_shape, (), np.dtype(np.float64), stencil.complex_step,
                writable=bool(plan and plan.writable))
    nfev, y0 = 0, None
    if f0 is None:
        y0 = task.call(x0.reshape(x_shape), " (at x itself)")
        fx = np.array(as_output(y0, where=" (at x itself)"), copy=True)  # f may reuse its buffer
        nfev = 1 + task.extra
        task.extra = 0
    else:
        fx = np.array(as_output(f0, where=" (`f0`, f at x)"), copy=True)
    if plan is None or plan.out_shape != fx.shape or plan.out_dtype != fx.dtype.str:
        plan = Plan(fx.shape, fx.dtype.str, writable=task.writable)
        inherited = _CODE_DECISIONS.get(f, key)
        if inherited is not None and vectorized == "auto":
            plan.strategy, writable, plan.reasons = inherited
            plan.writable = plan.writable or writable
            plan.verify = STRATEGIES[plan.strategy].batched
        _PLANS.set(f, key, plan)
    task.writable = plan.writable = plan.writable or task.writable
    task.out_shape, task.m = fx.shape, fx.size
    eps = eps_for(x0.dtype, fx.dtype)
    dtype = result_dtype(x0, fx)
    task.out_dtype = dtype
    return Prepared(f, task, plan, key, stencil, x0, x_shape, fx, eps, dtype, vectorized,
                    max_memory, executor, progress, spec, nfev, nfev, y0)
