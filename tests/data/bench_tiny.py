"""Source of pytest-benchmark-tiny.json (stats.data and cpu flags stripped):

    pytest -p no:fastjac bench_tiny.py --benchmark-json=out.json --benchmark-max-time=0.02 \\
        --benchmark-min-rounds=3 --benchmark-warmup=off
"""
import numpy as np
import pytest
import fastjac
from fastjac.reference import numeric_jacobian


@pytest.mark.parametrize("n", [3, 6])
@pytest.mark.parametrize("impl", ["reference-loop", "fastjac"])
def test_tanh(benchmark, impl, n):
    x = np.linspace(-1, 1, n)
    fn = {"reference-loop": lambda: numeric_jacobian(x, np.tanh),
          "fastjac": lambda: fastjac.jacobian(np.tanh, x)}[impl]
    benchmark.group = f"engine|tanh|n={n}"
    benchmark.extra_info["impl"] = impl
    J = benchmark(fn)
    assert np.allclose(J, np.diag(1 - np.tanh(x) ** 2), atol=1e-6)


@pytest.mark.parametrize("impl", ["reference-loop", "fastjac"])
def test_generic(benchmark, impl):
    benchmark.group = "startup"
    x = np.ones(2)
    fn = numeric_jacobian if impl == "reference-loop" else (lambda x, f: fastjac.jacobian(f, x))
    J = benchmark(fn, x, np.sin)
    assert J.shape == (2, 2)


def test_nogroup(benchmark):
    assert benchmark(sum, [1, 2]) == 3
