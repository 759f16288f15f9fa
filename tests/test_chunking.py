"""The chunk size is tuned on the first long run, whatever decided the strategy.

A run that is long enough (``MIN_BLOCKS_TO_TUNE`` default-size blocks) tries
larger chunks on its first blocks and keeps the fastest; later warm calls use
that size.  These tests watch the tuner through a recording subclass: which
sizes it tried, which it chose, and what the warm calls then used.  They do
not time anything: which size wins is the machine's business.
"""
import math

import numpy as np
import pytest

import fastjac
from fastjac._engine import chunking, pipeline


class Recorded(chunking.TunedBlocks):
    made = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.finished = False
        Recorded.made.append(self)

    def __iter__(self):
        yield from super().__iter__()
        self.finished = True


@pytest.fixture
def recorded(monkeypatch):
    Recorded.made = []
    monkeypatch.setattr(pipeline, "TunedBlocks", Recorded)
    return Recorded.made


class Counted:
    def __init__(self):
        self.calls, self.rows = 0, []

    def __call__(self, v):
        self.calls += 1
        self.rows.append(v.shape[0] if v.ndim == 2 else 1)
        return np.tanh(v) * np.sum(v, axis=-1, keepdims=True)


def _x(n=1500):
    return np.linspace(-1, 1, n)


@pytest.mark.parametrize("vectorized", [True, "auto"])
def test_the_first_long_run_tunes_and_warm_calls_use_its_choice(recorded, vectorized):
    f, x = Counted(), _x()
    J = fastjac.jacobian(f, x, vectorized=vectorized)
    tuned = [t for t in recorded if t.finished]
    assert len(tuned) == 1, [(t.plan, t.finished) for t in recorded]
    t = tuned[0]
    assert set(t.timings) == set(t.plan) and t.factor in t.timings
    f.calls, f.rows = 0, []
    J2 = fastjac.jacobian(f, x, vectorized=vectorized)            # warm
    size = t.base * t.factor
    assert f.calls == math.ceil(x.size / size)
    assert max(f.rows) == 2 * size
    np.testing.assert_array_equal(J, J2)


def test_a_tuned_run_agrees_with_fixed_chunks(recorded):
    from fastjac._engine import chunk_policy

    f, x = Counted(), _x()
    tuned = fastjac.jacobian(f, x, vectorized=True)
    with chunk_policy(1 << 16, tune=False):
        fixed = fastjac.jacobian(Counted(), x, vectorized=True)
    np.testing.assert_allclose(tuned, fixed, rtol=0, atol=1e-12)
