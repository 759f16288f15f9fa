"""Source of pytest-benchmark-tiny.json (stats.data and cpu flags stripped):

    pytest -p no:fastjac bench_tiny.py --benchmark-json=out.json --benchmark-max-time=0.02 \\
        --benchmark-min-rounds=3 --benchmark-warmup=off

tests/test_cli.py also runs it as written; ``test_gradient_speed`` is the
example of ``fastjac bench --help`` ("benchmark your own derivative code").
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


def loss(W):
    return np.sum(np.tanh(W) ** 2)


W = np.linspace(-1, 1, 12).reshape(3, 4)


def test_gradient_speed(benchmark):
    g = benchmark(fastjac.gradient, loss, W)    # times fastjac.gradient(loss, W)
    assert g.shape == W.shape
    # Central differences at h ~ EPS**(1/3): truncation h**2/6 |f'''| and
    # round-off EPS |f| / h are both ~1e-10 here; 1e-8 leaves a 100x margin.
    t = np.tanh(W)
    assert np.allclose(g, 2 * t * (1 - t ** 2), rtol=0, atol=1e-8)
