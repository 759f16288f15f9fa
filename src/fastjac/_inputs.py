"""Several inputs at once: ``x`` as a tuple or dict of arrays.

The inputs are packed into one flat vector so that all of them are perturbed
in one stream of batched evaluations (no pass per input).  ``f`` is called
as ``f(*x)`` for a tuple and ``f(**x)`` for a dict; the Jacobian comes back
in the same container, one block per input.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._validate import as_point, describe, working_dtype

__all__ = ["InputSpec", "pack", "pack_like", "parts_like", "is_multi"]


def is_multi(x) -> bool:
    return isinstance(x, (tuple, dict)) and not (isinstance(x, tuple) and _is_numeric_tuple(x))


def _is_numeric_tuple(x):
    # (1.0, 2.0) is a point, not two inputs: treat tuples of plain scalars as array_like.
    return all(np.isscalar(v) for v in x)


@dataclass(frozen=True)
class InputSpec:
    """How a tuple/dict of arrays maps onto one flat vector."""

    kind: str            # "tuple" or "dict"
    keys: tuple          # positions or dict keys
    shapes: tuple
    bounds: tuple        # (start, stop) per input in the flat vector
    dtype: np.dtype

    @property
    def size(self) -> int:
        return self.bounds[-1][1] if self.bounds else 0

    def unpack(self, flat):
        """Views of ``flat`` (shape ``(*batch, N)``) as the inputs, batch axes first."""
        lead = flat.shape[:-1]
        parts = [flat[..., a:b].reshape(lead + shape) for (a, b), shape in zip(self.bounds, self.shapes)]
        return tuple(parts) if self.kind == "tuple" else dict(zip(self.keys, parts))

    def wrap(self, f):
        """``f`` over the flat vector (batched too, when ``f`` is).

        An instance of a module-level class rather than a closure, so that it
        pickles whenever ``f`` does (process and cluster executors)."""
        return _FlatF(f, self)

    def split(self, J, out_shape):
        """Cut ``J`` of shape ``out_shape + (N,)`` into one Jacobian per input."""
        blocks = [J[..., a:b].reshape(tuple(out_shape) + shape)
                  for (a, b), shape in zip(self.bounds, self.shapes)]
        return tuple(blocks) if self.kind == "tuple" else dict(zip(self.keys, blocks))


class _FlatF:
    """``f(*inputs)`` / ``f(**inputs)`` called on the packed flat vector."""

    def __init__(self, f, spec):
        self.__wrapped__ = f
        self.spec = spec

    def __call__(self, v):
        parts = self.spec.unpack(v)
        return self.__wrapped__(*parts) if self.spec.kind == "tuple" else self.__wrapped__(**parts)


def pack(x, name="x"):
    """Flatten a tuple/dict of arrays into ``(flat, spec)``.

    All inputs share one working dtype: float32 only if every input is float32.
    """
    if isinstance(x, dict):
        keys = tuple(x)
        values = [x[k] for k in keys]
        labels = [f"{name}[{k!r}]" for k in keys]
        kind = "dict"
    else:
        keys = tuple(range(len(x)))
        values = list(x)
        labels = [f"{name}[{i}]" for i in keys]
        kind = "tuple"
    if not values:
        raise ValueError(f"`{name}` must hold at least one array; got an empty {kind}.")
    arrays = [as_point(v, label) for v, label in zip(values, labels)]
    dtype = np.result_type(*[working_dtype(a.dtype) for a in arrays])
    shapes = tuple(a.shape for a in arrays)
    sizes = np.cumsum([0] + [a.size for a in arrays])
    bounds = tuple((int(sizes[i]), int(sizes[i + 1])) for i in range(len(arrays)))
    flat = np.concatenate([a.reshape(-1).astype(dtype) for a in arrays]) if arrays else np.empty(0)
    return flat, InputSpec(kind, keys, shapes, bounds, np.dtype(dtype))


def parts_like(spec: InputSpec, v, name="v"):
    """The entries of a container shaped like x, in x's order, or a clear error."""
    if spec.kind == "dict":
        if not isinstance(v, dict):
            raise ValueError(f"`{name}` must be a dict with the same keys as x "
                             f"({list(spec.keys)}); got {describe(v)}.")
        missing = [k for k in spec.keys if k not in v]
        if missing:
            raise ValueError(f"`{name}` must have the same keys as x ({list(spec.keys)}); "
                             f"missing {missing}.")
        return [v[k] for k in spec.keys]
    if not isinstance(v, (tuple, list)) or len(v) != len(spec.shapes):
        raise ValueError(f"`{name}` must be a tuple with one entry per input of x "
                         f"({len(spec.shapes)}); got {describe(v)}.")
    return list(v)


def pack_like(spec: InputSpec, v, name="v"):
    """Pack a container shaped like the inputs, optionally with one leading
    batch axis on every part, into ``(flat, batched)``."""
    parts = parts_like(spec, v, name)
    try:
        arrays = [np.asarray(p, dtype=spec.dtype) for p in parts]
    except (TypeError, ValueError) as exc:
        raise TypeError(f"`{name}` must hold arrays of real numbers; got {describe(v)} "
                        f"({exc}).") from None
    batched = arrays[0].shape != spec.shapes[0]
    lead = arrays[0].shape[:1] if batched else ()
    for a, shape, key in zip(arrays, spec.shapes, spec.keys):
        if a.shape != lead + shape:
            raise ValueError(
                f"`{name}[{key!r}]` must have shape {lead + shape} to match x; got {a.shape}.")
    flat = np.concatenate([a.reshape(lead + (-1,)) for a in arrays], axis=-1)
    return flat, batched
