"""The rule table: one entry per op, collected from the family modules.

:data:`RULES` drives the tests (``tests/test_nn_*.py``), the benchmarks
(``benchmarks/bench_nn.py``, groups ``nn|{op}|{method}|B={B}|n={n}``) and
:func:`describe` (the table in ``docs/nn.md``).  An op added to a family
module and listed here shows up in all three.
"""
from __future__ import annotations

from ._activations import Elementwise, LeakyReLU, leaky_relu, relu, sigmoid, tanh
from ._dense import Dense, dense, dense_backward, dense_forward
from ._losses import CLIP, Loss, SoftmaxCrossEntropy, cross_entropy, cross_entropy_mean, mse, softmax_cross_entropy
from ._normalizers import LogSoftmax, Normalizer, Softmax, log_softmax, softmax

__all__ = ["CLIP", "RULES", "Dense", "Elementwise", "LeakyReLU", "LogSoftmax", "Loss", "Normalizer", "Softmax",
           "SoftmaxCrossEntropy", "cross_entropy", "cross_entropy_mean", "dense", "dense_backward",
           "dense_forward", "describe", "leaky_relu", "log_softmax", "mse", "relu", "sigmoid", "softmax",
           "softmax_cross_entropy", "tanh"]

#: op name -> rule; drives tests, benchmarks and docs.
RULES = {r.name: r for r in (sigmoid, tanh, relu, leaky_relu, softmax, log_softmax,
                             cross_entropy, cross_entropy_mean, mse, softmax_cross_entropy, dense)}


def describe() -> str:
    """The rule table as a markdown table (embedded in ``docs/nn.md``).

    Examples
    --------
    >>> from fastjac import nn
    >>> print(nn.describe().splitlines()[0])
    | op | kind | forward | derivative | `backend="auto"` runs |
    >>> len(nn.describe().splitlines()) == 2 + len(nn.RULES)
    True
    """
    lines = ["| op | kind | forward | derivative | `backend=\"auto\"` runs |",
             "|---|---|---|---|---|"]
    lines.extend(r.describe_row() for r in RULES.values())
    return "\n".join(lines) + "\n"
