"""Chunk sizes chosen by measurement, per function.

No single chunk size is best (``benchmarks/bench_chunking.py``): a dense
layer's loss runs about 1.8x faster with 4 MiB chunks than with 1 MiB, while
softmax cross-entropy runs up to 5x *slower* with 1-4 MiB than with 256 KiB.
What decides it is ``f``'s own working set: its temporaries are as large as
the chunk, and once they pass glibc's dynamic mmap/trim thresholds every
call returns them to the OS and faults them back in.  Only a measurement
sees that.

So a run of several chunks starts at the default size and, on its first
blocks, tries 1x, 2x, 4x, 8x and 16x of it (256 KiB to 4 MiB), two blocks
each (the faster of the two, to damp noise); the rest of the run uses the
size with the lowest time per direction, and a completed trial is remembered
per function so later calls skip it.  The trial blocks are real work:
nothing is evaluated twice.
"""
from __future__ import annotations

import time

import numpy as np

from .._memo import FunctionMemo
from .directions import SparseDirections

__all__ = ["TunedBlocks", "TRIAL_FACTORS", "MIN_BLOCKS_TO_TUNE"]

#: Multiples of the default chunk size tried on a run.
TRIAL_FACTORS = (1, 2, 4, 8, 16)
_TRIALS_PER_FACTOR = 2
#: Tune only when the run has at least this many default-size chunks.
MIN_BLOCKS_TO_TUNE = 4

_remembered = FunctionMemo()


class TunedBlocks:
    """Coordinate blocks over ``h`` whose size is tuned while they are consumed.

    Iterating yields :class:`SparseDirections`; the time between two requests
    is the time the consumer spent on the previous block (evaluate, combine,
    scatter), which is what the tuning measures.

    Parameters
    ----------
    h : ndarray, shape (n,)
        Steps per coordinate.
    base : int
        Directions per block at the default chunk size.
    largest : int
        Directions per block at the largest allowed chunk (``max_memory``).
    f, key :
        The function and a hashable description of the problem, for recall.
    """

    def __init__(self, h, base, largest, f=None, key=None):
        self.h, self.n = h, h.shape[0]
        self.base, self.largest = base, max(base, largest)
        self.f, self.key = f, key
        known = _remembered.get(f, key) if f is not None else None
        self.factor = known
        tune = known is None and self.n >= MIN_BLOCKS_TO_TUNE * base
        factors = [c for c in TRIAL_FACTORS if c * base <= self.largest] if tune else []
        # The trials take at most half the run, so they always complete and
        # are remembered: a trial cut short would be run again on every call,
        # its blocks of mixed sizes each a batch size to verify.
        while factors and sum(factors) * _TRIALS_PER_FACTOR * base > self.n // 2:
            factors.pop()
        self.plan = [c for c in factors for _ in range(_TRIALS_PER_FACTOR)] if len(factors) > 1 else []
        self.complete = bool(self.plan)
        if not self.plan and self.factor is None:
            self.factor = 1
        self.timings: dict = {}

    def __len__(self):
        size = self.base * (self.factor or 1)
        return len(self.plan) + -(-max(0, self.n - sum(c * self.base for c in self.plan)) // size)

    def __iter__(self):
        start, last, last_factor = 0, None, None
        plan = list(self.plan)
        while start < self.n:
            now = time.perf_counter()
            if last is not None and last_factor is not None:
                per_direction = (now - last) / (last_factor * self.base)
                best = self.timings.get(last_factor, np.inf)
                self.timings[last_factor] = min(best, per_direction)
            if plan:
                factor = plan.pop(0)
                last_factor = factor
            else:
                if self.factor is None:
                    self.factor = min(self.timings, key=self.timings.get)
                    if self.f is not None and self.complete:
                        _remembered.set(self.f, self.key, self.factor)
                factor, last_factor = self.factor, None
            cols = np.arange(start, min(self.n, start + factor * self.base))
            start = cols[-1] + 1
            last = time.perf_counter()
            yield SparseDirections(np.arange(len(cols) + 1), cols, self.h[cols], cols, int(cols[0]))
        if self.factor is None:  # the run ended inside the trials
            self.factor = min(self.timings, key=self.timings.get) if self.timings else 1
