"""What every entry of :data:`fastjac.nn.RULES` has in common.

The contract, the same for every family:

``forward(*args, axis=0, out=None, backend=None)``
    the op's value;
``jacobian(*args, axis=0, out=None, backend=None)``
    its derivative (the diagonal, a per-sample stack or a gradient: see the
    family);
``vjp(*args, g, axis=0, out=None, backend=None)``
    ``g`` times the Jacobian, without forming it;
``reference``, ``reference_jacobian``, ``reference_vjp``
    plain numpy written the way the reference notebook writes it (the oracle
    in the tests);
``plain``
    ``{method: function}``, the plain numpy expression a user would write
    for the method (the baseline in ``benchmarks/bench_nn.py``);
``routes``
    ``{method: Route}``: the implementations and the measured crossover;
``sample(shape, dtype, seed)``
    inputs in the op's domain.

A keyword that means nothing for an op (``axis`` of an elementwise op,
``backend`` of an op without a kernel) is accepted and documented; only a
value that cannot be honoured raises.
"""
from __future__ import annotations

__all__ = ["Rule"]


class Rule:
    """Common metadata of one entry of :data:`fastjac.nn.RULES`.

    Attributes
    ----------
    name : str
    kind : {"elementwise", "normalizer", "loss", "layer"}
    formula, derivative : str
        Rendered in the docs table.
    thresholds : dict
        ``{method: Threshold or Crossover}``: when ``backend="auto"`` runs
        compiled code (the last column of the docs table).
    routes : dict
        ``{method: Route}`` for the methods that have more than a numpy path.
    plain : dict
        ``{method: function}``: the plain numpy baseline of each method.
    """

    kind = "?"
    name: str
    formula: str
    derivative: str
    thresholds: dict = {}
    routes: dict = {}
    plain: dict = {}

    def __repr__(self):
        return f"<fastjac.nn rule {self.name!r} ({self.kind}): {self.formula}>"

    def describe_row(self) -> str:
        """This rule as one row of the markdown table of :func:`fastjac.nn.describe`."""
        th = "; ".join(f"{k}: {v.rule}" for k, v in self.thresholds.items()) or "numpy always"
        return f"| `{self.name}` | {self.kind} | `{self.formula}` | `{self.derivative}` | {th} |"
