"""The monitor's parameters: validation, layout and the loss over one flat vector.

A training loop hands :class:`~fastjac.monitor.GradientMonitor` matching
containers ``params`` and ``grads`` (a dict, or a tuple or list of arrays)
on every step.  :func:`layout_of` validates them and returns a
:class:`ParamLayout`: an :class:`~fastjac._inputs.InputSpec` (how the arrays
map onto one flat vector, the form the engine perturbs) plus the names the
reports use (``params['W1']``, ``params[2]``).  Layouts are cached per
structure, since this runs on every step.

:class:`FlatLoss` is ``loss_fn`` seen as a function of that flat vector,
batch-aware when ``loss_fn`` is.  :func:`loss_fn_error` rewrites the
engine's messages, which speak of ``f`` and ``x``, in the monitor's terms.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._inputs import InputSpec, pack_like
from ._memo import code_of
from ._validate import describe, working_dtype

__all__ = ["ParamLayout", "layout_of", "FlatLoss", "nonfinite_counts", "loss_fn_error",
           "check_loss_value", "SWEEP_STEPS", "sweep_finds_nonfinite"]

#: With ``loss=`` the monitor reads the parameters once every SWEEP_STEPS
#: steps (:func:`sweep_finds_nonfinite`), and nothing on the steps between: in
#: a training loop a call's fixed Python cost (tens of microseconds there, the
#: caches cold after the step's BLAS calls) weighs more on a 1 ms step than
#: the bytes read, so one full read every 16 steps costs less than a sixteenth
#: of the parameters on every step.
SWEEP_STEPS = 16


@dataclass(frozen=True)
class ParamLayout:
    """An :class:`InputSpec` over the parameters, with their report names."""

    spec: InputSpec
    names: tuple         # "params['W1']" or "params[0]", one per array

    @property
    def size(self) -> int:
        return self.spec.size

    @property
    def dtype(self) -> np.dtype:
        return self.spec.dtype

    @property
    def bounds(self) -> tuple:
        return self.spec.bounds

    def signature(self) -> tuple:
        return (self.spec.kind, self.spec.keys, self.spec.shapes)

    def pack(self, params) -> np.ndarray:
        """The parameters as one flat vector in the working dtype (a copy)."""
        return pack_like(self.spec, params, "params")[0]

    def locate(self, j: int) -> tuple:
        """``(array, index inside it)`` of element ``j`` of the flat vector."""
        for p, (a, b) in enumerate(self.spec.bounds):
            if a <= j < b:
                shape = self.spec.shapes[p]
                idx = np.unravel_index(j - a, shape) if shape else ()
                return p, tuple(int(i) for i in idx)
        raise IndexError(j)


def _labels(keys, kind, name):
    return tuple(f"{name}[{k!r}]" if kind == "dict" else f"{name}[{k}]" for k in keys)


def _items(container, name):
    """``(kind, keys, arrays)`` of a dict or a tuple/list of arrays, validated."""
    if isinstance(container, dict):
        kind, keys = "dict", tuple(container)
        values = [container[k] for k in keys]
    elif isinstance(container, (tuple, list)):
        kind, keys, values = "tuple", tuple(range(len(container))), list(container)
    else:
        raise TypeError(f"`{name}` must be a dict or a tuple of arrays; got {describe(container)}.")
    if not keys:
        raise ValueError(f"`{name}` must hold at least one array; got an empty "
                         f"{type(container).__name__}.")
    arrays = []
    for label, v in zip(_labels(keys, kind, name), values):
        a = np.asarray(v)
        if a.dtype.kind not in "biuf":
            raise TypeError(f"`{label}` must be an array of real numbers; got {describe(v)}.")
        arrays.append(a)
    return kind, keys, arrays


def _layout_uncached(params, grads):
    kind, keys, parrs = _items(params, "params")
    if kind == "dict" and isinstance(grads, dict) and set(grads) == set(keys):
        grads = {k: grads[k] for k in keys}  # dict order does not matter
    gkind, gkeys, garrs = _items(grads, "grads")
    if gkind != kind or gkeys != keys:
        raise ValueError(
            f"`grads` must have the same entries as params ({list(keys)}); got "
            f"{type(grads).__name__} with entries {list(gkeys)}.")
    for label, p, g in zip(_labels(keys, kind, "grads"), parrs, garrs):
        if g.shape != p.shape:
            raise ValueError(f"`{label}` must have the shape of the matching parameter "
                             f"{p.shape}; got {g.shape}.")
    dtype = np.dtype(np.result_type(*[working_dtype(a.dtype) for a in parrs]))
    sizes = np.cumsum([0] + [a.size for a in parrs])
    bounds = tuple((int(sizes[i]), int(sizes[i + 1])) for i in range(len(parrs)))
    spec = InputSpec(kind, keys, tuple(a.shape for a in parrs), bounds, dtype)
    return ParamLayout(spec, _labels(keys, kind, "params")), parrs, garrs


_LAYOUTS: dict = {}


def layout_of(params, grads):
    """Validate ``params``/``grads``; returns ``(layout, param arrays, grad arrays)``.

    Cached per structure (names, shapes, dtypes) for dicts of arrays, the
    common case: the key costs a microsecond, validation several.
    """
    if isinstance(params, dict) and isinstance(grads, dict) and len(params) == len(grads):
        try:
            key = tuple([(k, v.shape, v.dtype, grads[k].shape, grads[k].dtype)
                         for k, v in params.items()])
        except (AttributeError, KeyError):  # not arrays, or other keys: the validating path
            key = None
        layout = _LAYOUTS.get(key) if key is not None else None
        if layout is not None:
            return layout, list(params.values()), [grads[k] for k in params]
        result = _layout_uncached(params, grads)
        if key is not None and len(_LAYOUTS) < 64:
            _LAYOUTS[key] = result[0]
        return result
    return _layout_uncached(params, grads)


def nonfinite_counts(layout: ParamLayout, arrays) -> dict:
    """``{name: number of NaN/inf entries}`` for the arrays that hold any."""
    out = {}
    for name, a in zip(layout.names, arrays):
        bad = a.size - int(np.count_nonzero(np.isfinite(a))) if a.size else 0
        if bad:
            out[name] = bad
    return out


def sweep_finds_nonfinite(arrays) -> bool:
    """Does any of ``arrays`` hold a NaN or inf?  One ``x . x`` each (finite iff
    every entry is, barring overflow, which ``np.isfinite`` then rules out).

    Once a NaN or inf is in a parameter, the updates keep it there (``p - lr
    g`` is not finite when ``p`` is not), so a sweep every ``SWEEP_STEPS``
    steps finds it within ``SWEEP_STEPS`` steps, even when the loss absorbs it
    (``tanh(inf) = 1``).
    """
    for a in arrays:
        if not math.isfinite(float(np.vdot(a, a))) and not np.isfinite(a).all():
            return True
    return False


class FlatLoss:
    """``loss_fn(params)`` as a function of the flat parameter vector.

    ``v`` of shape ``(n,)`` is unpacked into views shaped like the
    parameters; ``v`` of shape ``(k, n)`` into views with a leading batch
    axis, for a ``loss_fn`` that accepts a batch (the engine's probe finds
    out).  One instance per ``loss_fn`` and layout, kept by the monitor, so
    the engine's plan for it (its batching decision) is found again at the
    next check.
    """

    def __init__(self, loss_fn, layout: ParamLayout):
        self.loss_fn, self.layout = loss_fn, layout

    @property
    def __code__(self):
        # The engine files batching decisions per code object too, for closures
        # made afresh on every step: a new closure of the same lambda inherits
        # the decision, which the engine verifies on one point before trusting.
        return code_of(self.loss_fn)

    def __call__(self, v):
        if v.shape[-1] != self.layout.size:
            # The engine's column-major probe (points as trailing columns):
            # the monitor's loss_fn takes a leading batch axis only.
            raise ValueError("loss_fn takes a leading batch axis only")
        return self.loss_fn(self.layout.spec.unpack(v))


def check_loss_value(loss):
    """``loss`` as a float (or None): the value the training step computed."""
    if loss is None or type(loss) is float:
        return loss
    if isinstance(loss, (bool, np.bool_)) or not (
            isinstance(loss, (int, float, np.integer, np.floating))
            or (isinstance(loss, np.ndarray) and loss.size == 1 and loss.dtype.kind in "iuf")):
        raise TypeError("`loss` must be the training step's loss value (a real number) or "
                        f"None; got {describe(loss)}.")
    return float(np.asarray(loss).reshape(-1)[0]) if isinstance(loss, np.ndarray) else float(loss)


# The engine names the function `f` and its argument `x`; the monitor's user
# wrote `loss_fn` and passed parameters.  Applied in order.
_WORDS = (
    ("`f` tried to modify its input in place. fastjac passes f its own copies so that the "
     "caller's x and the perturbation stack stay intact; copy inside f (e.g. `x = x.copy()`) "
     "before writing to it",
     "`loss_fn` tried to modify the parameters in place: the monitor hands it read-only "
     "copies, so that the parameters stay intact; copy inside loss_fn (e.g. "
     "`W = p['W'].copy()`) before writing to them"),
    ("batched `f`", "batched `loss_fn`"),
    ("`f`", "`loss_fn`"),
    ("f(x)", "loss_fn(params)"),
    ("f returned", "loss_fn returned"),
    ("raised by f", "raised by loss_fn"),
    ("(at x itself)", "(at the parameters)"),
    ("perturbed points", "perturbed copies of the parameters"),
    ("(direction ", "(at the parameters moved along direction "),
    ("(k, *x.shape)", "(k, n)"),
    ("the caller's x", "the parameters"),
)


def _translate(text: str) -> str:
    for old, new in _WORDS:
        text = text.replace(old, new)
    return text


def loss_fn_error(exc: BaseException) -> BaseException:
    """``exc`` from the engine, reworded for the monitor's user.

    The engine's own errors (``TypeError``/``ValueError`` about ``f``) become
    the same type with the message in terms of ``loss_fn`` and the
    parameters; an error raised inside ``loss_fn`` itself is kept, with the
    note naming the evaluation reworded.
    """
    text = str(exc)
    if isinstance(exc, (TypeError, ValueError)) and text.startswith(("`f`", "batched `f`")):
        return type(exc)(_translate(text))
    notes = getattr(exc, "__notes__", None)
    if notes:
        exc.__notes__ = [_translate(n) for n in notes]
    return exc
