"""Memory guard: chunked stacks stay within max_memory; impossible results fail early."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import fastjac
from fastjac._engine import memory
from fastjac.engine import jacobian_with_info

N, M = 8200, 4
MAX_MEMORY = 1 << 20


class Project:
    """``f(x) = A @ tanh(x)``: few outputs, so J is small while the stack of
    all ``2n`` perturbed points would be ``2 * n * n * 8`` bytes = 1.08 GB."""

    def __init__(self, rng):
        self.A = rng.normal(size=(M, N)) / N

    def __call__(self, x):
        return np.tanh(x) @ self.A.T


def test_peak_stays_within_budget_plus_result(rng):
    f = Project(rng)
    x = rng.uniform(-1, 1, N)
    assert 2 * N * N * 8 > 2**30  # the unchunked stack would exceed 1 GiB
    fastjac.jacobian(f, x, vectorized=True, max_memory=MAX_MEMORY)  # warm the stack buffer
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        J, info = jacobian_with_info(f, x, vectorized=True, max_memory=MAX_MEMORY)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    result = J.nbytes
    assert info.nblocks > 1000 and info.block_size * 2 * (N + M) * 8 <= MAX_MEMORY
    assert info.peak_bytes <= MAX_MEMORY + result + 2 * 3 * M * 8 * info.block_size
    # Slack: f allocates one temporary the size of its input chunk (tanh(x),
    # <= MAX_MEMORY) and the engine a private copy of x and the steps (3 n floats);
    # 64 KiB covers Python objects and small arrays.
    slack = MAX_MEMORY + 3 * N * 8 + (64 << 10)
    assert peak <= MAX_MEMORY + result + slack, (peak, result)


def test_impossible_result_names_the_way_out(monkeypatch):
    monkeypatch.setattr(memory, "_LARGE_RESULT", 0)
    monkeypatch.setattr(memory, "available_memory", lambda: 5000)
    with pytest.raises(MemoryError, match="jvp.*sampled_jacobian.*output='sparse'"):
        fastjac.jacobian(np.sin, np.zeros(100))
    with pytest.raises(MemoryError, match="output='sparse'.*output='diagonal'"):
        fastjac.jacobian(np.sin, np.zeros(100), sparsity="diagonal")
    # The structured formats that do fit go through.
    d = fastjac.jacobian(np.sin, np.zeros(100), sparsity="diagonal", output="diagonal")
    np.testing.assert_allclose(d, 1.0, atol=1e-9)  # cos(0), central-difference error


def test_huge_dense_result_fails_before_allocating():
    # 1e6 x 1e6 float64 = 8 TB: refused up front, not by the allocator.
    with pytest.raises(MemoryError, match="output='sparse'"):
        fastjac.jacobian(np.sin, np.zeros(10**6), sparsity="diagonal")
    d = fastjac.jacobian(np.sin, np.zeros(10**6), sparsity="diagonal", output="diagonal")
    assert d.shape == (10**6,)


def test_max_memory_below_one_direction_is_explained():
    with pytest.raises(MemoryError, match="max_memory.*jvp/sampled_jacobian"):
        fastjac.jacobian(np.sin, np.zeros(1000), max_memory=100)
