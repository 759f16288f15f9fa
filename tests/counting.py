"""A wrapper that counts the points (and calls) a function really sees."""
from __future__ import annotations

import numpy as np


class Counting:
    """``Counting(f, x_ndim)``: calls ``f`` and counts points, batch rows included.

    A call on an array with ``x_ndim`` dimensions is one point; one more
    (leading or trailing) axis is a batch of that many points.
    """

    def __init__(self, f, x_ndim, trailing=False):
        self.f, self.x_ndim, self.trailing = f, x_ndim, trailing
        self.points = self.calls = 0
        self.size = None  # x.size, learned from the first single point

    def __call__(self, x):
        x = np.asarray(x)
        self.calls += 1
        if x.ndim > self.x_ndim:
            # A batch, in either layout: as many points as it holds x's worth of numbers.
            self.points += x.size // self.size if self.size else (
                x.shape[-1] if self.trailing else x.shape[0])
        else:
            self.size = x.size
            self.points += 1
        return self.f(x)

    def reset(self):
        self.points = self.calls = 0
